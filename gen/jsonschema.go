package gen

import (
	"bytes"
	"encoding/json"
)

// The JSON Schemas of the generated types are written by the generator, as
// data, from the declaration: the generated package compiles them at init
// and links no reflection-based schema code.

const draft = "https://json-schema.org/draft/2020-12/schema"

// member is one member of a JSON object, in order.
type member struct {
	key string
	val any
}

// object is a JSON object whose members keep their order.
type object []member

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(m.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// bound is a declared bound as a JSON number: as written, but an
// integer's in plain decimal (1e3 is 1000), which every JSON reader takes
// as an integer.
func bound(n Number, kind string) json.Number {
	if r := n.Rat(); kind == "integer" && r.IsInt() {
		return json.Number(r.Num().String())
	}
	return json.Number(n.String())
}

// typeSchema is the schema of t. described says whether t's description
// belongs in it (not for a top-level object, whose description is the
// type's doc comment).
func typeSchema(t Type, described bool) object {
	var o object
	add := func(k string, v any) { o = append(o, member{k, v}) }
	switch t.Type {
	case "string", "integer", "number", "boolean":
		add("type", t.Type)
	case "enum":
		add("type", "string")
		values := make([]any, len(t.Values))
		for i, v := range t.Values {
			values[i] = v
		}
		add("enum", values)
	case "array":
		if t.Items != nil {
			items := *t.Items
			add("items", typeSchema(items, true))
		}
		add("type", "array")
	case "object":
		o = objectSchema(t.Properties, func(f Field) bool { return f.Type.Required })
	}
	if t.MinLength != nil {
		add("minLength", *t.MinLength)
	}
	if t.MaxLength != nil {
		add("maxLength", *t.MaxLength)
	}
	if t.Pattern != "" {
		add("pattern", t.Pattern)
	}
	if t.Minimum != nil {
		add("minimum", bound(*t.Minimum, t.Type))
	}
	if t.Maximum != nil {
		add("maximum", bound(*t.Maximum, t.Type))
	}
	if t.MinItems != nil {
		add("minItems", *t.MinItems)
	}
	if t.MaxItems != nil {
		add("maxItems", *t.MaxItems)
	}
	if d := oneLine(t.Description); d != "" && described {
		add("description", d)
	}
	return o
}

// objectSchema is the schema of a struct of fields: no other members,
// the required ones listed.
func objectSchema(fs Fields, required func(Field) bool) object {
	props := make(object, len(fs))
	for i, f := range fs {
		props[i] = member{f.Name, typeSchema(f.Type, true)}
	}
	o := object{{"properties", props}, {"additionalProperties", false}, {"type", "object"}}
	var req []string
	for _, f := range fs {
		if required(f) {
			req = append(req, f.Name)
		}
	}
	if len(req) > 0 {
		o = append(o, member{"required", req})
	}
	return o
}

// document is a top-level schema: $schema first.
func document(o object) string {
	b, err := json.Marshal(append(object{{"$schema", draft}}, o...))
	if err != nil {
		panic(err) // strings, numbers and booleans only
	}
	return string(b)
}

// jobSchema is the schema document of a job's input or output; nil: none.
func jobSchema(t *Type) string {
	if t == nil {
		return document(object{{"type", "null"}})
	}
	return document(typeSchema(*t, t.Type != "object" && t.Type != "enum"))
}

// inputSchema is the schema document of a job's input. A job without
// input takes null or no input, and also {}: what the React client sends
// for a job whose input type has no members.
func inputSchema(t *Type) string {
	if t == nil {
		return document(object{{"type", []any{"null", "object"}}, {"additionalProperties", false}})
	}
	return jobSchema(t)
}

// labelsSchema is the schema document of the labels.
func labelsSchema(fs Fields) string {
	return document(objectSchema(fs, func(f Field) bool { return f.Type.Required }))
}
