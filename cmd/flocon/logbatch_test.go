package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// lockedBuffer is a bytes.Buffer that counts the writes it gets.
type lockedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.buf.Write(p)
}

func (l *lockedBuffer) get() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String(), l.writes
}

func TestLogLinesAreBatchedAndWarningsFlushAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &lockedBuffer{}
		b := newBatchWriter(out)
		log := (&options{logLevel: "info", logFormat: "text"}).logger(b)
		for i := range 3 {
			log.Info("request", "n", i)
		}
		if s, n := out.get(); n != 0 {
			t.Fatalf("info lines written before the batch delay: %d writes: %q", n, s)
		}
		time.Sleep(logBatchDelay)
		synctest.Wait()
		s, n := out.get()
		if n != 1 || strings.Count(s, "msg=request") != 3 {
			t.Fatalf("after the delay: %d writes, want 1 with 3 lines: %q", n, s)
		}
		log.Info("before")
		log.Warn("trouble")
		s, n = out.get()
		if n != 2 || !strings.HasSuffix(s, "msg=before\n"+s[strings.LastIndex(s, "time="):]) ||
			!strings.HasSuffix(s, "msg=trouble\n") {
			t.Fatalf("a warning did not flush itself and the line before it, in order: %d writes: %q", n, s)
		}
		log.With("component", "x").Info("last")
		b.Flush()
		if s, n = out.get(); n != 3 || !strings.Contains(s, "msg=last component=x") {
			t.Fatalf("Flush did not write the last line: %d writes: %q", n, s)
		}
		time.Sleep(2 * logBatchDelay) // the timer still pending finds nothing to write
		synctest.Wait()
		if _, n = out.get(); n != 3 {
			t.Fatalf("an empty batch was written: %d writes", n)
		}
	})
}

func TestLogBatchIsWrittenWhenFull(t *testing.T) {
	out := &lockedBuffer{}
	b := newBatchWriter(out)
	line := bytes.Repeat([]byte("x"), 1000)
	for range logBatchMax/len(line) + 1 {
		_, _ = b.Write(line)
	}
	if _, n := out.get(); n != 1 {
		t.Fatalf("%d writes after more than logBatchMax bytes, want 1", n)
	}
	b.Flush()
	if s, _ := out.get(); len(s) != (logBatchMax/len(line)+1)*len(line) {
		t.Fatalf("wrote %d bytes", len(s))
	}
}
