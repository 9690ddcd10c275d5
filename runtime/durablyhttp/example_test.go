package durablyhttp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// Serving Durably's HTTP protocol with tenant isolation: Authenticate
// turns a request into the caller, OnTrigger stamps the caller's tenant on
// every run it triggers, and OnRunAccess hides other tenants' runs. (The
// generated handler of a durably.yaml does the same with typed labels.)
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "durablyhttp-example-")
	defer os.RemoveAll(dir)
	st, err := sqlitestore.Open(filepath.Join(dir, "app.db"), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	durably.MustRegister(e, &durably.Job[string, string]{
		Name: "echo",
		Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
			return in, nil
		},
	})

	type caller struct{ Org string }
	h, err := durablyhttp.New(e, durablyhttp.Options[caller, durably.MapLabels]{
		Auth: &durablyhttp.AuthConfig[caller, durably.MapLabels]{
			Authenticate: func(r *http.Request) (caller, error) {
				org := r.Header.Get("X-Org") // a real application checks a session
				if org == "" {
					return caller{}, durablyhttp.Reject(http.StatusUnauthorized, "Unauthorized")
				}
				return caller{Org: org}, nil
			},
			OnTrigger: func(ctx context.Context, c caller, req *durablyhttp.TriggerRequest[durably.MapLabels]) error {
				req.Labels = &durably.MapLabels{"organizationId": c.Org}
				return nil
			},
			OnRunAccess: func(ctx context.Context, c caller, run *durablyhttp.Run[durably.MapLabels], op durablyhttp.Operation) error {
				if run.Labels["organizationId"] != c.Org {
					return durablyhttp.Reject(http.StatusNotFound, `{"error":"Run not found"}`)
				}
				return nil
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle("/api/durably/", http.StripPrefix("/api/durably", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	call := func(method, path, org, body string) string {
		req, _ := http.NewRequest(method, srv.URL+"/api/durably"+path, strings.NewReader(body))
		req.Header.Set("X-Org", org)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprint(res.StatusCode, " ", strings.TrimSpace(string(b)))
	}
	triggered := call("POST", "/trigger", "acme", `{"jobName":"echo","input":"hi"}`)
	fmt.Println(triggered[:len(`200 {"runId":"`)])
	runID := strings.Split(triggered, `"`)[3]
	fmt.Println(call("GET", "/run?runId="+runID, "globex", ""))
	fmt.Println(call("GET", "/run?runId="+runID, "", ""))
	// Output:
	// 200 {"runId":"
	// 404 {"error":"Run not found"}
	// 401 Unauthorized
}
