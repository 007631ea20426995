package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// The daemon's log is written in batches. Every request writes one info
// line (the gateway's access log), and one write(2) per line was one of
// about 20 system calls of a warm request (strace -c, scripts/bench.sh row
// 5b): lines written within logBatchDelay of each other now go out in one
// write. Warnings and errors flush at once, with whatever came before
// them, and serve flushes on its way out; a kill -9 loses at most the last
// logBatchDelay of info lines.
const (
	logBatchDelay = 100 * time.Millisecond
	logBatchMax   = 64 << 10 // a batch this big is written at once
)

// batchWriter buffers what is written to out and writes it at most
// logBatchDelay after the first unwritten byte, or on Flush.
type batchWriter struct {
	mu    sync.Mutex
	out   io.Writer
	buf   []byte
	timer *time.Timer
	armed bool // a flush is due from timer
}

func newBatchWriter(out io.Writer) *batchWriter { return &batchWriter{out: out} }

// Write keeps p for the next flush; it never fails (slog ignores a log
// write's error anyway).
func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > logBatchMax {
		b.flushLocked()
	}
	b.buf = append(b.buf, p...)
	if !b.armed {
		b.armed = true
		if b.timer == nil {
			b.timer = time.AfterFunc(logBatchDelay, b.Flush)
		} else {
			b.timer.Reset(logBatchDelay)
		}
	}
	return len(p), nil
}

// Flush writes what is buffered.
func (b *batchWriter) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *batchWriter) flushLocked() {
	b.armed = false // a timer still pending finds nothing, or the next batch
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.out.Write(b.buf)
	b.buf = b.buf[:0]
}

// flushHandler flushes its batchWriter after every record at warn level
// or above, so what goes wrong is seen at once.
type flushHandler struct {
	slog.Handler
	b *batchWriter
}

func (h flushHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.b.Flush()
	}
	return err
}

func (h flushHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushHandler{h.Handler.WithAttrs(as), h.b}
}

func (h flushHandler) WithGroup(name string) slog.Handler {
	return flushHandler{h.Handler.WithGroup(name), h.b}
}
