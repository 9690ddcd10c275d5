package durablyhttp_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

// TestReadmeRoutes: every route the README and the guides name (GET
// /steps?runId=…, POST /trigger, …) is one the handler serves: none answers
// the protocol's plain "Not Found" of an unknown route. The contract is
// left out, and /healthz, the tenants fixture's own route, is not the
// handler's.
func TestReadmeRoutes(t *testing.T) {
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	var text []byte
	for _, doc := range append(docs, "../../README.md") {
		if filepath.Base(doc) == "contract.md" {
			continue
		}
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, b...)
	}
	routes := map[[2]string]bool{}
	for _, m := range regexp.MustCompile("`(GET|POST|DELETE) (/[^` ?]*)").FindAllStringSubmatch(string(text), -1) {
		if m[2] != "/healthz" {
			routes[[2]string{m[1], m[2]}] = true
		}
	}
	if len(routes) < 8 {
		t.Fatalf("the documents name %d routes", len(routes))
	}
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
			o.Jobs = []durably.JobSchema{} // GET /jobs is served when the jobs are given
		})
		for r := range routes {
			if status, body := head(t, v.srv.URL+"/api/durably"+r[1], r[0]); status == 404 && body == "Not Found" {
				t.Errorf("a document names %s %s, which the handler does not serve", r[0], r[1])
			}
		}
	})
}

// head sends a request and returns its status and, for a 404, the
// beginning of its body: an event stream's answer never ends, so the
// request is given up once its status is in.
func head(t *testing.T, url, method string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = admin.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		return res.StatusCode, ""
	}
	b := make([]byte, len("Not Found")+1)
	n, _ := io.ReadFull(res.Body, b)
	return res.StatusCode, string(b[:n])
}
