package store

import "time"

// Gathering commits: a burst of small packages (pacman -Syu over one
// keep-alive connection) asks for them one after the other, so each small
// download was proven after the previous one's commit had started and the
// group commit found them one or two at a time: every one or two blobs paid
// a whole batch (an fsync of blobs/, a synced index transaction with its
// msyncs, the goroutine and thread hand-offs of blocking system calls), on
// the two cores the next request needs. A batch that starts with a download
// held in memory now waits up to commitGather after that commit arrived for
// the ones that follow, or until gatherBytes of held bodies or
// maxCommitBatch commits are queued, whichever comes first (row 5a under
// strace -c: 25 fsyncs of blobs/ and 50 msyncs for 196 packages, against
// 120 and 240 for 200 before).
//
// Nobody waits for it but the download's own goroutine: readers were
// released when the bytes were proven (before the gather), and until its
// row is durable the blob is still found in flight by every lookup (Begin,
// Inflight). The cost is durability later by at most commitGather (a crash
// in that window loses the proven bodies of the batch, as a crash before
// their fsync always did; no row ever names a blob the disk does not hold)
// and the held bodies' memory for that long, bounded by gatherBytes (1 MiB:
// with 2 MiB the daemon's anonymous memory at the end of row 5a of
// scripts/bench.sh, which sets its peak RSS, was 11.8-15.2 MiB against
// 12.3-12.5 before; a held body is live heap, which the GC's goal
// multiplies by 1.5). A
// download written to a temp file (a large one) is not held back: its own
// fsync is the cost, and it waits for no other.
const (
	commitGather = 25 * time.Millisecond
	gatherBytes  = 1 << 20
)

// gatherLocked waits, c.mu held (released while it waits), until the queue
// is a batch worth writing: see commitGather. It returns at once when the
// oldest queued commit is not a body held in memory or already waited.
func (c *committer) gatherLocked() {
	if len(c.queue) == 0 || !c.queue[0].p.inMem {
		return
	}
	wait := c.gatherWait - time.Since(c.queue[0].at)
	if wait <= 0 || c.fullLocked() {
		return
	}
	if c.full == nil {
		c.full = make(chan struct{}, 1)
	}
	t := time.NewTimer(wait)
	c.mu.Unlock()
	select {
	case <-t.C:
	case <-c.full:
	}
	t.Stop()
	c.mu.Lock()
}

// fullLocked reports whether the queue holds a batch worth writing at once.
func (c *committer) fullLocked() bool {
	return len(c.queue) >= maxCommitBatch || c.heldBytes >= c.gatherMax
}

// queuedLocked counts req in the queue; a writer gathering is told when
// the queue became a full batch.
func (c *committer) queuedLocked(req *commitReq) {
	if req.p.inMem {
		c.heldBytes += req.p.size
	}
	if c.full != nil && c.fullLocked() {
		select {
		case c.full <- struct{}{}:
		default:
		}
	}
}

// takenLocked uncounts the commits of a batch taken from the queue.
func (c *committer) takenLocked(batch []*commitReq) {
	for _, r := range batch {
		if r.p.inMem {
			c.heldBytes -= r.p.size
		}
	}
}
