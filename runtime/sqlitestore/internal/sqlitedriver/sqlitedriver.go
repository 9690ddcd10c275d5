// Package sqlitedriver names the database/sql driver the SQLite store opens.
// The store's driver is modernc.org/sqlite ("sqlite"), and no option of the
// store changes that. The variable exists for one caller, the driver
// comparison of runtime/sqlitestore/driverbench (a module of its own, so
// that the other driver never becomes a dependency of durably), which runs
// the store's own statements on another cgo-free SQLite.
package sqlitedriver

// Name is the registered database/sql driver name; set it before Open.
var Name = "sqlite"

// URI reports whether the driver needs a "file:" URI for the query
// parameters (_pragma, _txlock) the store passes.
var URI = false
