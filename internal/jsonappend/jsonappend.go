// Package jsonappend appends JSON without reflection, for the hot paths that
// encode the same few shapes many times: events and runs on the wire.
package jsonappend

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/durably-go/durably/store"
)

// Writer appends the members of a JSON object to B; the first member gets
// no comma. Callers write the braces.
type Writer struct {
	B    []byte
	more bool
}

func (w *Writer) Key(k string) {
	if w.more {
		w.B = append(w.B, ',')
	}
	w.more = true
	w.B = append(w.B, '"')
	w.B = append(w.B, k...)
	w.B = append(w.B, '"', ':')
}

func (w *Writer) Str(k, v string) {
	w.Key(k)
	w.B = String(w.B, v)
}

func (w *Writer) NullableStr(k, v string) {
	if v == "" {
		w.Key(k)
		w.B = append(w.B, "null"...)
		return
	}
	w.Str(k, v)
}

func (w *Writer) Int(k string, v int64) {
	w.Key(k)
	w.B = strconv.AppendInt(w.B, v, 10)
}

func (w *Writer) Raw(k string, v json.RawMessage) {
	w.Key(k)
	if len(v) == 0 {
		w.B = append(w.B, "null"...)
		return
	}
	w.B = append(w.B, v...)
}

func (w *Writer) Labels(k string, m map[string]string) {
	w.Key(k)
	w.B = Labels(w.B, m)
}

func (w *Writer) Progress(k string, p *store.Progress) {
	w.Key(k)
	w.B = Progress(w.B, p)
}

func Labels(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	for i, k := range store.SortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, k)
		b = append(b, ':')
		b = String(b, m[k])
	}
	return append(b, '}')
}

func Progress(b []byte, p *store.Progress) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"current":`...)
	b = strconv.AppendInt(b, int64(p.Current), 10)
	if p.Total != nil {
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, int64(*p.Total), 10)
	}
	if p.Message != nil {
		b = append(b, `,"message":`...)
		b = String(b, *p.Message)
	}
	return append(b, '}')
}

// String quotes s as encoding/json does (including its HTML-safe
// escaping, harmless for the protocol, H-052) without its reflection.
func String(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b': // short forms, as encoding/json (Go 1.22+) and JSON.stringify write them
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Time appends t in the stored form (S-002), or null for the zero time.
func (w *Writer) Time(k string, t time.Time) {
	w.Key(k)
	if t.IsZero() {
		w.B = append(w.B, "null"...)
		return
	}
	w.B = append(w.B, '"')
	w.B = t.UTC().AppendFormat(w.B, store.TimeLayout)
	w.B = append(w.B, '"')
}

// Bool appends a boolean member.
func (w *Writer) Bool(k string, v bool) {
	w.Key(k)
	w.B = strconv.AppendBool(w.B, v)
}

// Attempts appends a run's attempt history as an array of objects with
// the members of store.Attempt's JSON form ([] when there is none).
func (w *Writer) Attempts(k string, attempts []store.Attempt) {
	w.Key(k)
	w.B = append(w.B, '[')
	for i, a := range attempts {
		if i > 0 {
			w.B = append(w.B, ',')
		}
		o := Writer{B: append(w.B, '{')}
		o.Int("attempt", int64(a.Number))
		o.Str("outcome", a.Outcome)
		if a.Step != "" {
			o.Str("step", a.Step)
		}
		o.Str("error", a.Error)
		o.Time("at", a.At)
		if a.Worker != "" {
			o.Str("worker", a.Worker)
		}
		w.B = append(o.B, '}')
	}
	w.B = append(w.B, ']')
}
