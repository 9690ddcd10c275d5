package durably

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/durably-go/durably/runtime/sqlitestore"
)

// TestKeyScope pins the key scope of D11: global without TenantLabels
// (WithGlobalKeys: the contract case "D11 WithGlobalKeys keeps a key
// global …"), otherwise never "" and different for any two
// different assignments of the tenant labels (a missing label differs from
// an empty one; separators inside values cannot make two tenants meet).
func TestKeyScope(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "k.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	plain, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	scoped, err := New(Config{Store: st, TenantLabels: []string{"org", "env"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := plain.keyScope(map[string]string{"org": "a"}); got != "" {
		t.Fatalf("without TenantLabels: %q", got)
	}
	if got, want := scoped.keyScope(map[string]string{"org": "a", "env": "prod", "other": "x"}), `[["org","a"],["env","prod"]]`; got != want {
		t.Fatalf("scope %s, want %s", got, want)
	}
	seen := map[string]map[string]string{}
	for _, labels := range []map[string]string{
		nil,
		{"org": ""},
		{"env": ""},
		{"org": "", "env": ""},
		{"org": "a"},
		{"org": "a", "env": "b"},
		{"org": "a\",\"b"},
		{"org": "a", "env": "\"]"},
		{"org": "a,b"},
		{"org": "a", "env": ","},
		{"org": "null"},
		{"other": "a"}, // not a tenant label: the same scope as nil
	} {
		s := scoped.keyScope(labels)
		if s == "" {
			t.Fatalf("labels %v have the global scope", labels)
		}
		if prev, ok := seen[s]; ok && !(len(prev) == 0 && labels["other"] != "") {
			t.Fatalf("labels %v and %v share scope %s", prev, labels, s)
		}
		seen[s] = labels
	}
}

func TestTenantLabelsAreChecked(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "k.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, c := range []struct {
		labels []string
		msg    string
	}{
		{[]string{"org id"}, `durably: Config.TenantLabels[0] "org id": must contain only alphanumeric characters, dashes, underscores, dots, and slashes`},
		{[]string{""}, `durably: Config.TenantLabels[0] "": must contain only alphanumeric characters, dashes, underscores, dots, and slashes`},
		{[]string{"org", "env", "org"}, `durably: Config.TenantLabels[2] "org": listed twice`},
	} {
		_, err := New(Config{Store: st, TenantLabels: c.labels})
		if !errors.Is(err, ErrValidation) || err.Error() != c.msg {
			t.Errorf("TenantLabels %q: %v, want %s", c.labels, err, c.msg)
		}
	}
}
