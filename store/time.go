package store

import (
	"fmt"
	"slices"
	"time"
)

// TimeLayout is the wire form of every timestamp, and the stored form where
// an engine keeps timestamps as text (SQLite): UTC with exactly three
// fractional digits, so that string order is time order (S-002). Stores
// keep milliseconds whatever the column type (Truncate).
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime renders t in TimeLayout.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// InRange reports whether t can be stored: TimeLayout has a four-digit
// year, and a later year would sort before every other time as text.
func InRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// ParseTime reads a TimeLayout timestamp.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(TimeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("durably store: bad timestamp %q: %w", s, err)
	}
	return t, nil
}

// Truncate rounds t down to the millisecond in UTC, the precision the store
// keeps, so that a value read back equals the value written.
func Truncate(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// SortedKeys returns the map's keys in ascending order.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
