package durably

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/durably-go/durably/store"
)

// The longest strings the engine stores, in bytes of UTF-8 (store/limits.go
// says why each is what it is; docs/limits.md is the guide). Names and keys
// past their limit are refused as bad input; messages are cut.
const (
	MaxJobNameBytes      = store.MaxJobNameBytes
	MaxKeyBytes          = store.MaxKeyBytes
	MaxLabelKeyBytes     = store.MaxLabelKeyBytes
	MaxLabelValueBytes   = store.MaxLabelValueBytes
	MaxKeyScopeBytes     = store.MaxKeyScopeBytes
	MaxStepNameBytes     = store.MaxStepNameBytes
	MaxSignalNameBytes   = store.MaxSignalNameBytes
	MaxScheduleNameBytes = store.MaxScheduleNameBytes
	MaxWorkerIDBytes     = store.MaxWorkerIDBytes
	MaxMessageBytes      = store.MaxMessageBytes
	MaxTraceContextBytes = store.MaxTraceContextBytes
	MaxJSONBytes         = store.MaxJSONBytes
	MaxBatchBytes        = store.MaxBatchBytes
)

// storable reports whether s can be stored and looked up as text by every
// store: PostgreSQL refuses a NUL character and bytes that are not UTF-8
// in text and jsonb, so a key, label value or run id with them would fail
// in the database instead of as bad input.
func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// checkText is the one rule for a name or key the stores keep: storable,
// and at most max bytes, so that every store can index it (a longer key
// made PostgreSQL's index refuse the row, while SQLite stored it). field
// names the string as the caller wrote it: an HTTP member, a Go option.
func checkText(field, s string, max int) error {
	if !storable(s) {
		return validationErrorf("%s must be valid UTF-8 without NUL characters", field)
	}
	if len(s) > max {
		return tooLong(field, len(s), max)
	}
	return nil
}

func tooLong(field string, n, max int) error {
	return validationErrorf("%s must be at most %d bytes, got %d", field, max, n)
}

// checkLabelKeys applies R-035 and MaxLabelKeyBytes. Unlike the original,
// a bad key is a validation error (HTTP 400, D2).
func checkLabelKeys(labels map[string]string) error {
	for _, k := range store.SortedKeys(labels) {
		if !store.ValidLabelKey(k) {
			return validationErrorf("Invalid label key %q: %s", abbrev(k), store.LabelKeyRule)
		}
		if len(k) > MaxLabelKeyBytes {
			return tooLong(fmt.Sprintf("label key %q", abbrev(k)), len(k), MaxLabelKeyBytes)
		}
	}
	return nil
}

// checkLabelValues applies checkText to each label value, named
// labels.<key>.
func checkLabelValues(labels map[string]string) error {
	for _, k := range store.SortedKeys(labels) {
		if err := checkText("labels."+k, labels[k], MaxLabelValueBytes); err != nil {
			return err
		}
	}
	return nil
}

// checkKeyScope refuses a key scope longer than MaxKeyScopeBytes, naming
// the tenant labels that make it. Each label fits its own limit, but the
// scope holds all the tenant labels at once, with JSON's escapes (a '<' is
// six bytes), beside the job name and a key in one index entry.
func (e *Engine) checkKeyScope(scope string) error {
	if len(scope) <= MaxKeyScopeBytes {
		return nil
	}
	fields := make([]string, len(e.cfg.TenantLabels))
	for i, k := range e.cfg.TenantLabels {
		fields[i] = "labels." + k
	}
	return validationErrorf("%s: the tenant labels must make a key scope of at most %d bytes (their keys and values as JSON), got %d",
		strings.Join(fields, ", "), MaxKeyScopeBytes, len(scope))
}

// checkStepName refuses a step name no store can keep in its index of
// step names: the step fails for good, without running or being recorded,
// and the error names it.
func checkStepName(name string) error {
	if err := checkText(fmt.Sprintf("step name %q", abbrev(name)), name, MaxStepNameBytes); err != nil {
		return Permanent(err)
	}
	return nil
}

// checkJSON refuses a JSON document (an input, an output) over
// MaxJSONBytes.
func checkJSON(field string, doc []byte) error {
	if len(doc) > MaxJSONBytes {
		return validationErrorf("%s must be at most %d bytes of JSON, got %d", field, MaxJSONBytes, len(doc))
	}
	return nil
}

// checkBatchSize refuses a batch trigger that writes more than
// MaxBatchBytes. Every run fits its own limits, but PostgreSQL takes a
// batch in one statement, whose parameters together must stay under 1 GiB;
// SQLite would take any batch.
func checkBatchSize(runs []store.NewRun) error {
	total := 0
	for _, nr := range runs {
		r := nr.Run
		total += len(r.JobName) + len(r.Input) + len(r.IdempotencyKey) + len(r.ConcurrencyKey) + len(r.KeyScope)
		for k, v := range r.Labels {
			total += len(k) + len(v)
		}
	}
	if total > MaxBatchBytes {
		return validationErrorf("a batch trigger must write at most %d bytes (the inputs, keys, labels and job names of its runs), got %d for %d runs",
			MaxBatchBytes, total, len(runs))
	}
	return nil
}

// storedMessage is a message the job did not choose the length of (an
// error, a log or progress message) made fit to store: bytes that are not
// UTF-8 and NUL characters become U+FFFD, and past MaxMessageBytes it is
// cut on a character boundary and ends with a marker saying so. Refusing
// it instead would lose the failure it reports.
func storedMessage(s string) string {
	if len(s) <= MaxMessageBytes && storable(s) {
		return s
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= MaxMessageBytes {
		return s
	}
	marker := fmt.Sprintf(" … [cut: %d bytes in all]", len(s))
	cut := MaxMessageBytes - len(marker)
	for !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker
}

// abbrev is s, or its first 32 bytes and an ellipsis, for an error message
// about a string that may be long.
func abbrev(s string) string {
	const keep = 32
	if len(s) <= keep {
		return s
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
