package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/flocon/flocon/store"
)

// fileRecorder is a ResponseWriter with a ReadFrom, as net/http's is: it
// counts the spans it was handed that are not parts of a file (sendfile
// takes only those).
type fileRecorder struct {
	*httptest.ResponseRecorder
	spans, notFile int
}

func (f *fileRecorder) ReadFrom(src io.Reader) (int64, error) {
	f.spans++
	if lr, ok := src.(*io.LimitedReader); !ok {
		f.notFile++
	} else if _, ok := lr.R.(*os.File); !ok {
		f.notFile++
	}
	return io.Copy(struct{ io.Writer }{f.ResponseRecorder}, src)
}

// TestInflightSentFromFile: http.ServeContent's copy of a download in
// flight reaches the response as parts of the download's file (sendfile,
// no copy through the gateway) while it grows, the held status goes out
// with the first of them, and the last byte only after the commit. (A
// download small enough to be held in memory is written from there.)
func TestInflightSentFromFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	pkg := newTestPkg(t, "sendfile", "1.0-1", store.DefaultMemoryBody+300<<10, nil)
	size := int64(len(pkg.data))
	p, leader, err := e.st.Begin(pkg.cid(t), size)
	if err != nil || !leader {
		t.Fatalf("Begin = %v, %v", leader, err)
	}
	content := e.g.newDownloadContent(t.Context(), p, size, pkg.filename)
	defer content.Close()
	rec := &fileRecorder{ResponseRecorder: httptest.NewRecorder()}
	held := &heldHeader{ResponseWriter: rec}
	held.WriteHeader(http.StatusOK)
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := io.CopyN(held, content, size) // what http.ServeContent does
		done <- result{n, err}
	}()
	half := len(pkg.data) / 2
	if _, err := p.Write(pkg.data[:half]); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(pkg.data[half:]); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("the copy ended before the commit: %d bytes, %v", r.n, r.err)
	default:
	}
	commit(t, p, pkg, nil)
	r := <-done
	if r.err != nil || r.n != size || !bytes.Equal(rec.Body.Bytes(), pkg.data) {
		t.Fatalf("copy = %d bytes, %v; body %d bytes, want the package's %d", r.n, r.err, rec.Body.Len(), size)
	}
	if rec.Code != http.StatusOK || !held.wrote {
		t.Errorf("status %d, header sent %v", rec.Code, held.wrote)
	}
	if rec.spans == 0 || rec.notFile > 0 {
		t.Errorf("%d spans reached the response, %d of them not parts of a file", rec.spans, rec.notFile)
	}
	if err := content.readErr(); err != nil {
		t.Errorf("readErr = %v", err)
	}
}
