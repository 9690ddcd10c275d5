package reference_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/reference"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// TestDeclaredSchedulesAndTenants: durably.yaml's schedules are added by
// Register, as declared, and its tenant labels scope keys through Config
// (one idempotency key, two organizations, two runs).
func TestDeclaredSchedulesAndTenants(t *testing.T) {
	ctx := context.Background()
	cfg := reference.Config(durably.Config{})
	if !slices.Equal(cfg.TenantLabels, []string{"organizationId"}) {
		t.Fatalf("Config sets TenantLabels %q, want the labels declared tenant: true", cfg.TenantLabels)
	}
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg.Store, cfg.PollingInterval = st, 20*time.Millisecond
	e, err := durably.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	jobs, err := reference.Register(e, handlers)
	if err != nil {
		t.Fatal(err)
	}
	got := e.Schedules()
	if len(got) != 1 {
		t.Fatalf("schedules %+v, want the one declared", got)
	}
	if s := got[0]; s.Name != "new-year-import" || s.JobName != "import-csv" || s.Cron != "0 3 1 1 *" || s.TimeZone != "Europe/Paris" {
		t.Fatalf("schedule %+v differs from the declaration", s)
	}
	in := reference.ImportCSVInput{Filename: "a.csv", Mode: reference.ImportCSVInputModeAppend, Rows: []reference.ImportCSVInputRowsItem{{Sku: "s", Quantity: 1}}}
	var ids []string
	for _, org := range []string{"acme", "globex"} {
		r, _, err := jobs.ImportCSV.Trigger(ctx, in, reference.NewLabels(org, reference.EnvProduction), reference.TriggerOptions{IdempotencyKey: "same"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Labels.OrganizationID != org {
			t.Fatalf("run labels %+v", r.Labels)
		}
		ids = append(ids, r.ID)
	}
	if ids[0] == ids[1] {
		t.Fatal("one idempotency key in two organizations gave one run: keys are not scoped by the tenant label")
	}
}
