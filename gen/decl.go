// Package gen turns a declaration of jobs, labels and an auth context
// (durably.yaml) into a Go package: typed jobs and their schedules, label
// structs whose wrong keys and enum values do not compile, the auth
// context, JSON Schemas, and a typed HTTP client. cmd/durably-gen is its
// command.
package gen

import (
	"fmt"
	"math/big"

	invopop "github.com/invopop/jsonschema"
	"go.yaml.in/yaml/v3"
)

// Declaration is the content of durably.yaml. Its JSON Schema (Schema,
// committed as durably.schema.json) lets editors check and complete it.
type Declaration struct {
	// Package names the Go package to emit.
	Package Package `json:"package" jsonschema:"description=The Go package to emit." yaml:"package"`
	// Labels every run carries; values are strings (string or enum fields).
	Labels Fields `json:"labels,omitempty" jsonschema:"description=The labels every run carries: string or enum fields." yaml:"labels,omitempty"`
	// Context is the authentication context the handler's hooks receive.
	Context Fields `json:"context,omitempty" jsonschema:"description=The fields of the authentication context (TContext)." yaml:"context,omitempty"`
	// Jobs are the jobs with their input and output types.
	Jobs []Job `json:"jobs" jsonschema:"minItems=1,description=The jobs." yaml:"jobs"`

	file string            // the declaration's file name, for problems
	pos  map[string][2]int // line and column of every member, by JSON pointer
}

// Package is where and how the code is emitted.
type Package struct {
	// Name is the Go package name.
	Name string `json:"name" jsonschema:"pattern=^[a-z][a-z0-9]*$,description=The Go package name." yaml:"name"`
	// Output is the directory of the package, relative to the declaration
	// and inside its module.
	Output string `json:"output" jsonschema:"minLength=1,description=The output directory: a relative path inside the module, from this file." yaml:"output"`
	// Client, unless false, also emits a typed HTTP client in Output/client.
	Client *bool `json:"client,omitempty" jsonschema:"description=Emit a typed HTTP client package in <output>/client (default true)." yaml:"client,omitempty"`
	// TypeScript, if set, is the directory (relative to the declaration,
	// below it) of a TypeScript module of the same types, durably_gen.ts,
	// for the React client: createDurably<Durably>({ api }).
	TypeScript string `json:"typescript,omitempty" jsonschema:"minLength=1,description=Also emit the types as a TypeScript module durably_gen.ts in this directory (relative to this file and below it) for the React client: createDurably<Durably>({ api }) from @coji/durably-react types every job's trigger." yaml:"typescript,omitempty"`
}

// Job declares one job.
type Job struct {
	// Name is the job's name in storage and on the wire.
	Name string `json:"name" jsonschema:"minLength=1,description=The job name used on the wire." yaml:"name"`
	// ID is the Go identifier of the job (exported); default: Name in
	// CamelCase.
	ID          string `json:"id,omitempty" jsonschema:"pattern=^[A-Z][A-Za-z0-9]*$,description=The Go identifier (default: the name in CamelCase)." yaml:"id,omitempty"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	// Input is the job's input type (an object, usually); absent for a job
	// without input, whose triggers take none.
	Input *Type `json:"input,omitempty" yaml:"input,omitempty"`
	// Output is the job's output type; absent for a job without output.
	Output *Type `json:"output,omitempty" yaml:"output,omitempty"`
	// Schedules trigger the job periodically (durably.AddSchedule); the
	// generated Register adds them.
	Schedules []Schedule `json:"schedules,omitempty" jsonschema:"description=Periodic triggers of the job; Register adds them (durably.AddSchedule)." yaml:"schedules,omitempty"`
	// Retry is the job's retry policy (durably.Job.Retry): its failing
	// steps, and its body failing outside a step, are tried again.
	Retry *Retry `json:"retry,omitempty" jsonschema:"description=The job's retry policy (durably.Job.Retry): a failing step is tried again up to maxAttempts in all; the run waits between attempts without holding a worker slot." yaml:"retry,omitempty"`
	// Priority is the default priority of the job's runs (durably.Job.Priority):
	// a smaller number is claimed first. The range is the HTTP trigger's,
	// so that a trigger can always override it.
	Priority *int `json:"priority,omitempty" jsonschema:"minimum=-2147483648,maximum=2147483647,description=The default priority of the job's runs (durably.Job.Priority): a smaller number is claimed first; default 0; a trigger's priority overrides it." yaml:"priority,omitempty"`
	// MaxRunning caps the runs of the job leased at once across every
	// process (durably.Job.MaxRunning).
	MaxRunning *int `json:"maxRunning,omitempty" jsonschema:"minimum=1,maximum=2147483647,description=The most runs of this job running at once across every process sharing the database (durably.Job.MaxRunning); leave it out for no limit." yaml:"maxRunning,omitempty"`
	// MaxRunningPerTenant caps the runs of the job leased at once per
	// tenant (durably.Job.MaxRunningPerTenant).
	MaxRunningPerTenant *int `json:"maxRunningPerTenant,omitempty" jsonschema:"minimum=1,maximum=2147483647,description=The most runs of this job running at once per tenant (the values of the tenant labels) across every process (durably.Job.MaxRunningPerTenant): one tenant's backlog never holds up another's runs; leave it out for no limit." yaml:"maxRunningPerTenant,omitempty"`
	// Timeout and StepTimeout are Go durations (durably.Job.Timeout and
	// StepTimeout); the schema's pattern for them is goDuration.
	Timeout     string `json:"timeout,omitempty" jsonschema:"description=How long a run may take from its first start to its end, waits included (durably.Job.Timeout): a positive Go duration (30s or 1h30m); past it the run fails, never retried; leave it out for no bound." yaml:"timeout,omitempty"`
	StepTimeout string `json:"stepTimeout,omitempty" jsonschema:"description=How long each attempt of each step may take (durably.Job.StepTimeout): a positive Go duration (500ms or 2m); past it the attempt fails and is retried under the retry policy; leave it out for no bound." yaml:"stepTimeout,omitempty"`
	// Signals are the signals the job's runs may wait for, by name, each
	// with the type of its payload (durably.Job.Signals).
	Signals Fields `json:"signals,omitempty" jsonschema:"description=The signals the job's runs may wait for (durably.WaitForSignal) and be sent (POST /signal): each name with the type of its payload, checked before the signal is kept." yaml:"signals,omitempty"`
}

// Retry declares a retry policy (durably.RetryPolicy), checked as the
// engine checks it at Register.
type Retry struct {
	// MaxAttempts counts every attempt, the first included.
	MaxAttempts int `json:"maxAttempts" jsonschema:"minimum=1,maximum=2147483647,description=The number of attempts in all: the first included; 1 means no retry." yaml:"maxAttempts"`
	// Backoff is exponential (the default) or fixed.
	Backoff string `json:"backoff,omitempty" jsonschema:"enum=exponential,enum=fixed,description=How the wait grows: exponential (the default: it doubles after each attempt up to max) or fixed (initial every time)." yaml:"backoff,omitempty"`
	// Initial and Max are Go durations (1s, 500ms, 1m30s); the schema's
	// pattern for them is goDuration, set by Schema.
	Initial string `json:"initial,omitempty" jsonschema:"description=The wait before the second attempt: a non-negative Go duration (500ms or 1m30s); default 1s." yaml:"initial,omitempty"`
	Max     string `json:"max,omitempty" jsonschema:"description=The longest wait between attempts: a non-negative Go duration not less than initial; 0s or left out for no cap." yaml:"max,omitempty"`
	// Jitter shortens each wait by a random fraction of up to Jitter.
	Jitter number `json:"jitter,omitempty" jsonschema:"minimum=0,maximum=1,description=Shortens each wait by a random fraction of it of up to jitter (0 to 1) so that runs failing together do not retry together; default 0." yaml:"jitter,omitempty"`
}

// Schedule declares a periodic trigger of a job (durably.Schedule).
type Schedule struct {
	// Name identifies the schedule in its ticks' idempotency keys; unique
	// in the declaration.
	Name string `json:"name" jsonschema:"minLength=1,description=The schedule's name: part of each tick's idempotency key; unique in the declaration." yaml:"name"`
	// Cron is a five-field cron spec or a descriptor (@daily, @every 10m).
	Cron string `json:"cron" jsonschema:"minLength=1,description=A five-field cron spec (minute hour day-of-month month day-of-week) or a descriptor: @hourly @daily @weekly @monthly @yearly or @every <duration> (whole seconds)." yaml:"cron"`
	// TimeZone is the IANA zone the spec is read in; default UTC.
	TimeZone string `json:"timeZone,omitempty" jsonschema:"description=The IANA time zone the spec is read in (e.g. Europe/Paris); default UTC; Local is refused." yaml:"timeZone,omitempty"`
	// Input is the input of every run, checked against the job's input.
	Input any `json:"input,omitempty" jsonschema:"description=The input of every run: it must match the job's input (leave it out for a job without input)." yaml:"input,omitempty"`
	// Labels are the labels of every run, checked against the labels.
	Labels map[string]string `json:"labels,omitempty" jsonschema:"description=The labels of every run: the declared labels, required ones included." yaml:"labels,omitempty"`
	// CatchUp bounds the age of a missed tick that still fires when an
	// engine starts: a Go duration ("1h30m"), or "none" to never fire one.
	// Left out, the latest missed tick fires however old.
	CatchUp string `json:"catchUp,omitempty" jsonschema:"description=How old a missed tick may be and still fire when an engine starts: a Go duration (90m or 1h30m) or none (never); default: no bound." yaml:"catchUp,omitempty"`
}

// Type is a JSON-Schema-style type.
type Type struct {
	Type        string `json:"type" jsonschema:"enum=string,enum=integer,enum=number,enum=boolean,enum=enum,enum=array,enum=object" yaml:"type"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	// Required marks an object property that must be present.
	Required bool `json:"required,omitempty" yaml:"required,omitempty"`
	// Tenant marks a label that identifies a tenant (D11): the generated
	// Config scopes keys by it (durably.Config.TenantLabels). Labels only,
	// required strings or enums; the schema has it on labels alone.
	Tenant bool `json:"tenant,omitempty" jsonschema:"-" yaml:"tenant,omitempty"`

	MinLength *int    `json:"minLength,omitempty" jsonschema:"minimum=0,maximum=2147483647" yaml:"minLength,omitempty"`
	MaxLength *int    `json:"maxLength,omitempty" jsonschema:"minimum=0,maximum=2147483647" yaml:"maxLength,omitempty"`
	Pattern   string  `json:"pattern,omitempty" yaml:"pattern,omitempty"`
	Minimum   *number `json:"minimum,omitempty" yaml:"minimum,omitempty"`
	Maximum   *number `json:"maximum,omitempty" yaml:"maximum,omitempty"`
	// Values are the members of an enum.
	Values   []string `json:"values,omitempty" jsonschema:"minItems=1" yaml:"values,omitempty"`
	Items    *Type    `json:"items,omitempty" yaml:"items,omitempty"`
	MinItems *int     `json:"minItems,omitempty" jsonschema:"minimum=0,maximum=2147483647" yaml:"minItems,omitempty"`
	MaxItems *int     `json:"maxItems,omitempty" jsonschema:"minimum=0,maximum=2147483647" yaml:"maxItems,omitempty"`
	// Properties of an object, in declaration order.
	Properties Fields `json:"properties,omitempty" yaml:"properties,omitempty"`

	// node is the YAML mapping the type was read from: every alias of one
	// anchored type has the same, and gets the same Go type.
	node *yaml.Node
}

// UnmarshalYAML reads a type and remembers its node (the anchored one,
// for an alias: the decoder resolves aliases before it calls this).
func (t *Type) UnmarshalYAML(n *yaml.Node) error {
	type plain Type // without this method
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*t = Type(p)
	t.node = n
	return nil
}

// Number is a number of the declaration as it was written: exact JSON
// text, so that a bound reaches the schema, the messages and the
// validation as the user wrote it (9007199254740993 stays itself, where a
// float64 would make it 9007199254740992).
type Number struct{ text string }

// NumberOf is the Number of a JSON number's text.
func NumberOf(text string) (Number, error) {
	if !jsonNumberText.MatchString(text) {
		return Number{}, fmt.Errorf("%q is not a JSON number", text)
	}
	return Number{text: text}, nil
}

// String is the number's JSON text.
func (n Number) String() string { return n.text }

// IsZero reports whether the number is 0 (or was never set).
func (n Number) IsZero() bool { return n.text == "" || n.Rat().Sign() == 0 }

// Rat is the number's exact value.
func (n Number) Rat() *big.Rat {
	r, ok := new(big.Rat).SetString(n.text)
	if !ok {
		return new(big.Rat)
	}
	return r
}

// UnmarshalYAML reads a YAML number in any of YAML's notations.
func (n *Number) UnmarshalYAML(node *yaml.Node) error {
	text, err := numberText(resolve(node))
	if err != nil {
		return fmt.Errorf("line %d: %w", node.Line, err)
	}
	n.text = text
	return nil
}

// number is the type of a declared number.
type number = Number

// Field is a named type: an object property, a label, a context field.
type Field struct {
	Name string
	Type Type
	line int
	col  int
}

// Fields is a YAML mapping whose order is kept: fields come out in the
// order they are declared.
type Fields []Field

// UnmarshalYAML keeps the mapping's order.
func (f *Fields) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: expected a mapping", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isNull(v) {
			continue // a member set to null is absent, as the schema saw it
		}
		var t Type
		if err := v.Decode(&t); err != nil {
			return err
		}
		*f = append(*f, Field{Name: k.Value, Type: t, line: k.Line, col: k.Column})
	}
	return nil
}

// JSONSchema describes Fields as an object whose values are Types.
func (Fields) JSONSchema() *invopop.Schema {
	return &invopop.Schema{
		Type:                 "object",
		AdditionalProperties: &invopop.Schema{Ref: "#/$defs/Type"},
	}
}
