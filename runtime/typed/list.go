package typed

import "encoding/json"

// List is the Go type of a declared array: a slice whose nil value is the
// empty array on the wire. A plain nil slice encodes as null, which the
// declaration's schema refuses, so a handler returning Output{Items: nil}
// (Go's usual "none") would fail its run after doing its work. A List
// converts to and from []T without a conversion, and append, range, len
// and the slices package take it as they are.
type List[T any] []T

// MarshalJSON encodes the items, and nil as [].
func (l List[T]) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]T(l))
}
