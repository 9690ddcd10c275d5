package gen

import (
	"fmt"
	"path"
	"strconv"
)

// clientFile emits the typed HTTP client package, importing the generated
// package at pkgPath.
func (g *emitter) clientFile(pkgPath string) []byte {
	g.reset()
	d := g.d
	pkg := d.Package.Name
	types := newScope("package client", fixedClientNames, "the generated")
	methods := newScope("the methods of client.Client", clientMethods, "the runtime client's method")
	g.header("client")
	g.p("// Package client is a typed Go client of a durably server that serves the")
	g.p("// jobs of package %s (%s): every job's trigger takes its input type, every", pkg, path.Base(pkgPath))
	g.p("// run comes back with its input, output and labels decoded.")
	g.p("package client")
	g.p(`import (
	"context"
	"iter"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyclient"

	%s %q
)`, pkg, pkgPath)
	g.p("")
	g.p("// Client talks to the server.")
	g.p("type Client struct {")
	g.p("*durablyclient.Client[%s.Labels]", pkg)
	g.p("}")
	g.p("")
	g.p("// New returns a client of the handler mounted at baseURL; options set the")
	g.p("// *http.Client, a request editor for authentication headers and the")
	g.p("// poll interval of the Wait methods.")
	g.p("func New(baseURL string, opts ...durablyclient.Option) *Client {")
	g.p("return &Client{durablyclient.New[%s.Labels](baseURL, opts...)}", pkg)
	g.p("}")
	g.p("")
	g.p("// TriggerOptions are the options of a trigger.")
	g.p("type TriggerOptions struct {")
	g.p("// Labels, from %s.NewLabels; left zero, none are sent and the", pkg)
	g.p("// server's OnTrigger hook may set them.")
	g.p("Labels %s.TriggerLabels", pkg)
	g.p("IdempotencyKey string")
	g.p("ConcurrencyKey string")
	g.p("// CoalesceSkip returns the pending run of the concurrency key instead")
	g.p("// of failing with a conflict.")
	g.p("CoalesceSkip bool")
	g.p("// RunAt makes the run claimable no earlier than this time; Delay, no")
	g.p("// earlier than this long after the trigger (whole milliseconds, rounded")
	g.p("// up). Left zero, the run is claimable at once.")
	g.p("RunAt time.Time")
	g.p("Delay time.Duration")
	g.p("// Priority, if set, overrides the job's: a smaller number runs first.")
	g.p("Priority *int")
	g.p("}")
	g.p("")
	g.p("func (o TriggerOptions) generic() durablyclient.TriggerOptions[%s.Labels] {", pkg)
	g.p("g := durablyclient.TriggerOptions[%s.Labels]{IdempotencyKey: o.IdempotencyKey, ConcurrencyKey: o.ConcurrencyKey, CoalesceSkip: o.CoalesceSkip,", pkg)
	g.p("RunAt: o.RunAt, Delay: o.Delay, Priority: o.Priority}")
	g.p("if !o.Labels.IsZero() {")
	g.p("l := o.Labels.Labels()")
	g.p("g.Labels = &l")
	g.p("}")
	g.p("return g")
	g.p("}")
	g.p("")
	g.p("// ListOptions filter run lists, with typed labels.")
	g.p("type ListOptions = durablyclient.ListOptions[%s.Labels]", pkg)
	g.p("")
	for i, j := range d.Jobs {
		id := JobID(j)
		jp := jobPtr(i, j)
		what := func(s string) origin {
			return origin{ptr: jp, what: fmt.Sprintf("the %s of job %q", s, j.Name), job: id, jobN: i + 1}
		}
		in, out := pkg+"."+id+"Input", pkg+"."+id+"Output"
		run := id + "Run"
		g.names.declare(types, run, what("client run type"))
		for _, m := range []string{"Trigger" + id, "TriggerAndWait" + id, "Wait" + id, "Get" + id + "Run", "List" + id + "Runs", "Subscribe" + id} {
			g.names.declare(methods, m, what("client method"))
		}
		g.clientSignals(methods, pkg, i, j)
		params, inArg := ", in "+in, "in"
		if j.Input == nil {
			params, inArg = "", "nil"
		}
		g.p("// %s is a run of job %q as the server shows it.", run, j.Name)
		g.p("type %s = durably.TypedRun[%s, %s, %s.Labels]", run, in, out, pkg)
		g.p("")
		g.p("// Trigger%s triggers job %q.", id, j.Name)
		g.p("func (c *Client) Trigger%s(ctx context.Context%s, opts TriggerOptions) (durablyclient.Triggered, error) {", id, params)
		g.p("return c.Trigger(ctx, %q, %s, opts.generic())", j.Name, inArg)
		g.p("}")
		g.p("")
		g.p("// TriggerAndWait%s triggers job %q and waits for its output (Wait%s).", id, j.Name, id)
		g.p("func (c *Client) TriggerAndWait%s(ctx context.Context%s, opts TriggerOptions) (durably.Outcome[%s], error) {", id, params, out)
		g.p("t, err := c.Trigger%s(ctx%s, opts)", id, map[bool]string{true: ", in", false: ""}[j.Input != nil])
		g.p("if err != nil {")
		g.p("return durably.Outcome[%s]{}, err", out)
		g.p("}")
		g.p("o, err := c.Wait%s(ctx, t.RunID)", id)
		g.p("return durably.Outcome[%s]{RunID: t.RunID, Output: o, Disposition: t.Disposition}, err", out)
		g.p("}")
		g.p("")
		g.p("// Wait%s waits until the run of job %q ends and returns its output:", id, j.Name)
		g.p("// over the run's event stream, asking for the run at the poll interval")
		g.p("// when the stream is not available, until ctx ends. A failed or")
		g.p("// cancelled run is a *durablyclient.RunError.")
		g.p("func (c *Client) Wait%s(ctx context.Context, id string) (%s, error) {", id, out)
		g.p("return durablyclient.WaitOutput[%s](ctx, c.Client, id, %q)", out, j.Name)
		g.p("}")
		g.p("")
		g.p("// Get%sRun returns a run of job %q, or nil when there is none or it", id, j.Name)
		g.p("// belongs to another job.")
		g.p("func (c *Client) Get%sRun(ctx context.Context, id string) (*%s, error) {", id, run)
		g.p("r, err := c.GetRun(ctx, id)")
		g.p("if err != nil || r == nil || r.JobName != %q {", j.Name)
		g.p("return nil, err")
		g.p("}")
		g.p("return durably.DecodeRun[%s, %s, %s.Labels](r)", in, out, pkg)
		g.p("}")
		g.p("")
		g.p("// List%sRuns lists runs of job %q, newest first.", id, j.Name)
		g.p("func (c *Client) List%sRuns(ctx context.Context, o ListOptions) ([]*%s, error) {", id, run)
		g.p("o.JobNames = []string{%q}", j.Name)
		g.p("runs, err := c.ListRuns(ctx, o)")
		g.p("if err != nil {")
		g.p("return nil, err")
		g.p("}")
		g.p("out := make([]*%s, 0, len(runs))", run)
		g.p("for _, r := range runs {")
		g.p("t, err := durably.DecodeRun[%s, %s, %s.Labels](r)", in, out, pkg)
		g.p("if err != nil {")
		g.p("return nil, err")
		g.p("}")
		g.p("out = append(out, t)")
		g.p("}")
		g.p("return out, nil")
		g.p("}")
		g.p("")
		g.p("// Subscribe%s streams the events of a run of job %q.", id, j.Name)
		g.p("func (c *Client) Subscribe%s(ctx context.Context, id string) iter.Seq2[durably.Event, error] {", id)
		g.p("return c.Subscribe(ctx, id)")
		g.p("}")
		g.p("")
	}
	return g.file()
}

// clientSignals emits the client's method that sends each signal of job i,
// its payload typed.
func (g *emitter) clientSignals(methods *scope, pkg string, i int, j Job) {
	id := JobID(j)
	for _, sg := range j.Signals {
		m := "Signal" + id + GoName(sg.Name)
		g.names.declare(methods, m, origin{ptr: "/jobs/" + strconv.Itoa(i) + "/signals/" + esc(sg.Name),
			what: fmt.Sprintf("the client method of signal %q of job %q", sg.Name, j.Name), job: id, jobN: i + 1})
		g.p("// %s sends the signal %q to the run id of job %q (POST /signal).", m, sg.Name, j.Name)
		g.p("func (c *Client) %s(ctx context.Context, id string, p %s.%s%sPayload) error {", m, pkg, id, GoName(sg.Name))
		g.p("return c.Signal(ctx, id, %q, p)", sg.Name)
		g.p("}")
		g.p("")
	}
}
