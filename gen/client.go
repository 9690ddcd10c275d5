package gen

import "path"

// clientFile emits the typed HTTP client package, importing the generated
// package at pkgPath.
func (g *emitter) clientFile(pkgPath string) []byte {
	g.reset()
	d := g.d
	pkg := d.Package.Name
	g.header()
	g.p("// Package client is a typed Go client of a durably server that serves the")
	g.p("// jobs of package %s (%s): every job's trigger takes its input type, every", pkg, path.Base(pkgPath))
	g.p("// run comes back with its input, output and labels decoded.")
	g.p("package client")
	g.p(`import (
	"context"
	"iter"

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
	g.p("// *http.Client and a request editor for authentication headers.")
	g.p("func New(baseURL string, opts ...durablyclient.Option) *Client {")
	g.p("return &Client{durablyclient.New[%s.Labels](baseURL, opts...)}", pkg)
	g.p("}")
	g.p("")
	g.p("type (")
	g.p("// TriggerOptions are the options of a trigger, with typed labels.")
	g.p("TriggerOptions = durablyclient.TriggerOptions[%s.Labels]", pkg)
	g.p("// ListOptions filter run lists, with typed labels.")
	g.p("ListOptions = durablyclient.ListOptions[%s.Labels]", pkg)
	g.p(")")
	g.p("")
	for _, j := range d.Jobs {
		id := JobID(j)
		in, out := pkg+"."+id+"Input", pkg+"."+id+"Output"
		run := "durablyclient.TypedRun[" + in + ", " + out + ", " + pkg + ".Labels]"
		g.p("// %sRun is a run of job %q as the server shows it.", id, j.Name)
		g.p("type %sRun = %s", id, run)
		g.p("")
		g.p("// Trigger%s triggers job %q.", id, j.Name)
		g.p("func (c *Client) Trigger%s(ctx context.Context, in %s, opts TriggerOptions) (durablyclient.Triggered, error) {", id, in)
		g.p("return c.Trigger(ctx, %q, in, opts)", j.Name)
		g.p("}")
		g.p("")
		g.p("// Get%sRun returns a run of job %q, or nil when there is none or it", id, j.Name)
		g.p("// belongs to another job.")
		g.p("func (c *Client) Get%sRun(ctx context.Context, id string) (*%sRun, error) {", id, id)
		g.p("r, err := c.GetRun(ctx, id)")
		g.p("if err != nil || r == nil || r.JobName != %q {", j.Name)
		g.p("return nil, err")
		g.p("}")
		g.p("return durablyclient.Decode[%s, %s, %s.Labels](r)", in, out, pkg)
		g.p("}")
		g.p("")
		g.p("// List%sRuns lists runs of job %q, newest first.", id, j.Name)
		g.p("func (c *Client) List%sRuns(ctx context.Context, o ListOptions) ([]*%sRun, error) {", id, id)
		g.p("o.JobNames = []string{%q}", j.Name)
		g.p("runs, err := c.ListRuns(ctx, o)")
		g.p("if err != nil {")
		g.p("return nil, err")
		g.p("}")
		g.p("out := make([]*%sRun, 0, len(runs))", id)
		g.p("for _, r := range runs {")
		g.p("t, err := durablyclient.Decode[%s, %s, %s.Labels](r)", in, out, pkg)
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
