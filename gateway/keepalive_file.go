package gateway

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/flocon/flocon/store"
	"github.com/flocon/flocon/store/repodb"
	"github.com/flocon/flocon/verify"
)

// fastFile is a verified stored file the keep-alive path answers with.
type fastFile struct {
	t       target
	e       repodb.Entry
	blob    *store.Blob // a package; nil for a signature
	sig     []byte      // a signature
	size    int64
	modtime time.Time
	start   time.Time
}

// fastFile looks path up: a package whose verified blob is stored and
// proven to be that package, or a signature the db entry or the store
// holds. Anything else (db files, files not stored, errors) is net/http's.
func (g *Gateway) fastFile(path string) (*fastFile, bool) {
	start := time.Now()
	if checkEscapedPath(path) != nil {
		return nil, false
	}
	segs := bytes.Split([]byte(path), []byte("/"))
	if len(segs) != 5 || string(segs[2]) != "os" {
		return nil, false
	}
	t, err := g.parseTarget(string(segs[1]), string(segs[3]), string(segs[4]))
	if err != nil || t.kind == kindDB {
		return nil, false
	}
	e, err := g.cfg.Store.Entry(t.repo.Name, t.arch, t.pkg)
	if err != nil {
		return nil, false
	}
	c, err := verify.CIDFromHex(e.SHA256)
	if err != nil {
		return nil, false
	}
	f := &fastFile{t: t, e: e, start: start}
	if t.kind == kindPkgSig {
		f.sig = e.PGPSig
		if len(f.sig) == 0 {
			if f.sig, err = g.cfg.Store.Sig(c); err != nil {
				return nil, false
			}
		}
		f.size, f.modtime = int64(len(f.sig)), modTime(e, time.Time{})
		return f, true
	}
	b, info, err := g.cfg.Store.OpenKept(c)
	if err != nil {
		return nil, false
	}
	if checkIdentity(info, t.pkg) != nil {
		_ = b.Close()
		return nil, false
	}
	f.blob, f.size, f.modtime = b, info.Size, modTime(e, info.Added)
	return f, true
}

func (f *fastFile) close() {
	if f.blob != nil {
		_ = f.blob.Close() // kept open for the blob's next request
	}
}

// appendHeader appends the response header net/http's path writes for f:
// http.ServeContent's headers sorted by name, then Date.
func appendHeader(b []byte, f *fastFile, now time.Time) []byte {
	b = append(b, "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: "...)
	b = strconv.AppendInt(b, f.size, 10)
	b = append(b, "\r\nContent-Type: application/octet-stream\r\n"...)
	if f.t.kind == kindPkg {
		b = append(b, "Etag: "...)
		b = append(b, etagOf(f.e)...)
		b = append(b, "\r\n"...)
	}
	if !f.modtime.IsZero() && !f.modtime.Equal(time.Unix(0, 0)) {
		b = append(b, "Last-Modified: "...)
		b = f.modtime.UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Date: "...)
	b = now.UTC().AppendFormat(b, http.TimeFormat)
	return append(b, "\r\n\r\n"...)
}
