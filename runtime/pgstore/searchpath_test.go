package pgstore_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
)

// TestOpenNamesMissingSchema: a DSN whose search_path names no existing
// schema fails with an error that says so, not with pgx's "cannot scan
// NULL into *string" (issue 12 item 5).
func TestOpenNamesMissingSchema(t *testing.T) {
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", "durably_no_such_schema")
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := pgstore.Open(ctx, u.String(), pgstore.Options{})
	if err == nil {
		st.Close()
		t.Fatal("Open succeeded with a search_path naming no schema")
	}
	for _, want := range []string{"search_path (durably_no_such_schema) names no existing schema", "create the schema or fix the DSN"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not contain %q", err, want)
		}
	}
}
