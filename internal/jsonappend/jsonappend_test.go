package jsonappend_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/durably-go/durably/internal/jsonappend"
	"github.com/durably-go/durably/store"
)

// sameReplacement writes the replacement character that stands for bytes
// that are not UTF-8 as itself: encoding/json writes it so up to Go 1.26
// and as the escape \ufffd from Go 1.27, which decodes alike. Applied to
// both sides of a comparison, it leaves every other difference standing.
func sameReplacement(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte(`\ufffd`), []byte("\ufffd"))
}

// equalJSON reports whether the writer's got is what encoding/json wrote,
// byte for byte but for how the replacement of invalid bytes is written.
func equalJSON(got, want []byte) bool {
	return bytes.Equal(sameReplacement(got), sameReplacement(want))
}

// The writer must produce what encoding/json produces (H-052): the wire is
// compared byte for byte with the original's in places, and clients decode
// it with ordinary JSON parsers.
func TestStringEscapesAsEncodingJSON(t *testing.T) {
	for _, c := range []struct{ name, in string }{
		{"empty", ""},
		{"plain", "hello, world"},
		{"quote and backslash", `say "hi" \ bye`},
		{"newline, return, tab", "a\nb\rc\td"},
		{"other control characters", "\x00\x01\x08\x0b\x0c\x1f"},
		{"DEL is not escaped", "\x7f"},
		{"HTML-safe", "<script>&amp;</script>"},
		{"line and paragraph separators", "a\u2028b\u2029c"},
		{"multi-byte", "日本語 émoji 🎉"},
		{"invalid UTF-8", "a\xffb\xc3(c\xe2\x82"},
		{"lone surrogate bytes", "\xed\xa0\x80"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, err := json.Marshal(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := jsonappend.String([]byte("prefix"), c.in); !equalJSON(got, append([]byte("prefix"), want...)) {
				t.Fatalf("String(%q) = %s, want %s", c.in, got[len("prefix"):], want)
			}
		})
	}
}

// Random strings, weighted towards the characters that need escaping.
func TestStringRandomAgainstEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		s := randomString(r)
		want, _ := json.Marshal(s)
		if got := jsonappend.String(nil, s); !equalJSON(got, want) {
			t.Fatalf("String(%q) = %s, want %s", s, got, want)
		}
		if utf8.ValidString(s) {
			var back string
			if err := json.Unmarshal(jsonappend.String(nil, s), &back); err != nil || back != s {
				t.Fatalf("round trip of %q: %q %v", s, back, err)
			}
		}
	}
}

func randomString(r *rand.Rand) string {
	special := []string{`"`, `\`, "<", ">", "&", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\u2028", "\u2029", "é", "🎉", "\xff", "\xc3"}
	var b strings.Builder
	for range r.IntN(24) {
		switch r.IntN(3) {
		case 0:
			b.WriteString(special[r.IntN(len(special))])
		case 1:
			b.WriteByte(byte(r.IntN(256)))
		default:
			b.WriteRune(rune(r.IntN(0x10FFFF)))
		}
	}
	return b.String()
}

// Labels are an object with sorted keys, as encoding/json writes a map.
func TestLabelsKeyOrderAndRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cases := []map[string]string{
		nil,
		{},
		{"b": "2", "a": "1", "c": "3"},
		{"organizationId": "org-<a>", "env": "prod\n", "Z": "", "z": "é"},
	}
	for range 2000 {
		m := map[string]string{}
		for range r.IntN(6) {
			m[randomString(r)] = randomString(r)
		}
		cases = append(cases, m)
	}
	for _, m := range cases {
		got := jsonappend.Labels(nil, m)
		want, _ := json.Marshal(m)
		if m == nil {
			want = []byte("{}") // labels are never null on the wire
		}
		if !equalJSON(got, want) {
			t.Fatalf("Labels(%q) = %s, want %s", m, got, want)
		}
		if !validKeys(m) {
			continue
		}
		var back map[string]string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("Labels(%q) = %s: %v", m, got, err)
		}
		if len(m) > 0 && !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip of %q gave %q", m, back)
		}
	}
}

func validKeys(m map[string]string) bool {
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

func TestProgressAsEncodingJSON(t *testing.T) {
	total, msg := 3, `step "2" <of> 3`
	for _, p := range []*store.Progress{
		nil,
		{Current: 0},
		{Current: 2, Total: &total},
		{Current: -1, Message: &msg},
		{Current: 2, Total: &total, Message: &msg},
	} {
		want, _ := json.Marshal(p)
		if got := jsonappend.Progress(nil, p); !bytes.Equal(got, want) {
			t.Fatalf("Progress(%+v) = %s, want %s", p, got, want)
		}
	}
}

// A Writer's members form one object: commas between members only, each
// kind in its JSON form, decoding to the values written.
func TestWriterMembers(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ts := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("x", 3600))
	for range 2000 {
		str, n, raw := randomValidString(r), r.Int64(), json.RawMessage(`{"a":[1,2,{"b":null}]}`)
		w := jsonappend.Writer{B: []byte{'{'}}
		w.Str("s", str)
		w.NullableStr("empty", "")
		w.NullableStr("full", str)
		w.Int("n", n)
		w.Raw("raw", raw)
		w.Raw("none", nil)
		w.Time("at", ts)
		w.Time("never", time.Time{})
		w.Bool("yes", true)
		w.Bool("no", false)
		w.Labels("l", map[string]string{"k": str})
		w.Progress("p", nil)
		b := append(w.B, '}')

		var got map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		want := map[string]any{
			"s": str, "empty": nil, "full": str, "n": json.Number(itoa(n)),
			"raw":  map[string]any{"a": []any{json.Number("1"), json.Number("2"), map[string]any{"b": nil}}},
			"none": nil, "at": "2026-01-02T02:04:05.678Z", "never": nil, "yes": true, "no": false,
			"l": map[string]any{"k": str}, "p": nil,
		}
		if str == "" {
			want["full"] = nil // NullableStr writes "" as null
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s decoded to\n%v\nwant\n%v", b, got, want)
		}
	}
}

func randomValidString(r *rand.Rand) string {
	return strings.ToValidUTF8(randomString(r), "\uFFFD")
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// The first member has no comma, every later one has one.
func TestWriterCommas(t *testing.T) {
	w := jsonappend.Writer{}
	w.Int("a", 1)
	w.Int("b", 2)
	w.Str("c", "3")
	if got, want := string(w.B), `"a":1,"b":2,"c":"3"`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
