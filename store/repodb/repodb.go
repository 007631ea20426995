package repodb

import (
	"errors"
	"io"
)

// ErrFormat reports a database that cannot be read.
var ErrFormat = errors.New("malformed repo database")

// Entry is one package of a sync database (every field of its desc).
type Entry struct {
	Filename  string              `json:"filename"`
	Name      string              `json:"name"`
	Base      string              `json:"base,omitempty"`
	Version   string              `json:"version"`
	Desc      string              `json:"desc,omitempty"`
	Arch      string              `json:"arch"`
	CSize     int64               `json:"csize"`
	ISize     int64               `json:"isize"`
	SHA256    string              `json:"sha256"` // hex
	MD5       string              `json:"md5,omitempty"`
	PGPSig    []byte              `json:"pgpsig,omitempty"` // decoded %PGPSIG%
	BuildDate int64               `json:"builddate,omitempty"`
	Packager  string              `json:"packager,omitempty"`
	Fields    map[string][]string `json:"fields,omitempty"` // every other %FIELD%
}

// DB is a parsed sync database.
type DB struct {
	Entries    []Entry
	ByFilename map[string]*Entry
}

// Parse reads a whole database, sniffing its compression.
func Parse(r io.Reader) (*DB, error) { panic("unimplemented") }

// ParseDesc parses one desc file.
func ParseDesc(b []byte) (Entry, error) { panic("unimplemented") }
