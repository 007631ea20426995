package p2p

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestRecordStore: records are found by key whether merged or not, one per
// (key, peer) with the latest expiry, gone once expired, and a provider
// past its quota is refused.
func TestRecordStore(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	r := newRecordStore(t0)
	a, b := peer.ID("peer a"), peer.ID("peer b")
	const n = 3 * minRecordMerge // several merges
	for i := range n {
		if err := r.add(t0, recordKey(i*7919), a, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.add(t0, recordKey(7919), b, 2*time.Hour)
	_ = r.add(t0.Add(time.Minute), recordKey(7919), a, 3*time.Hour) // a re-provide
	if got := r.get(t0, recordKey(7919)); len(got) != 2 {
		t.Fatalf("providers of a key held by a and b: %v", got)
	}
	if got := r.get(t0, recordKey(n*7919)); len(got) != 0 {
		t.Fatalf("providers of an unknown key: %v", got)
	}
	r.expire(t0.Add(90 * time.Minute))
	if got := r.len(); got != 2 {
		t.Fatalf("%d records after an hour and a half, want the 2 provided for longer", got)
	}
	if got := r.get(t0.Add(150*time.Minute), recordKey(7919)); fmt.Sprint(got) != fmt.Sprint([]peer.ID{a}) {
		t.Fatalf("after 2.5 h: %v, want only a (re-provided for 3 h)", got)
	}
	if got := r.get(t0, recordKey(14*7919)); len(got) != 0 {
		t.Fatalf("an expired record is still found: %v", got)
	}

	full := newRecordStore(t0)
	for i := range maxRecordsPerPeer {
		if err := full.add(t0, recordKey(i), a, time.Hour); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := full.add(t0, recordKey(maxRecordsPerPeer), a, time.Hour); err != errRecordsFull {
		t.Fatalf("a record past the per-peer quota: %v, want %v", err, errRecordsFull)
	}
	if err := full.add(t0, recordKey(0), b, time.Hour); err != nil {
		t.Fatalf("another provider is refused when one is at its quota: %v", err)
	}
}

// TestRecordStoreLongRun: over weeks of re-provides the expiry epoch moves
// forward (a record's expiry has 12 bits) and providers gone for good are
// forgotten; records keep their provider and expiry through both.
func TestRecordStoreLongRun(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	r := newRecordStore(t0)
	stay := peer.ID("stays")
	now := t0
	for day := range 60 { // past the 28 days of the expiry range, twice
		now = t0.Add(time.Duration(day) * 24 * time.Hour)
		for i := range 100 { // a hundred providers each day, gone the next
			if err := r.add(now, recordKey(i), peer.ID(fmt.Sprintf("day %d peer %d", day, i)), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.add(now, recordKey(7), stay, providerTTL); err != nil {
			t.Fatal(err)
		}
		r.expire(now.Add(2 * time.Hour))
		if got := r.get(now.Add(2*time.Hour), recordKey(7)); len(got) != 1 || got[0] != stay {
			t.Fatalf("day %d: providers of key 7 after the others expired: %v", day, got)
		}
	}
	if got := r.get(now.Add(providerTTL-time.Minute), recordKey(7)); len(got) != 1 {
		t.Fatalf("a record is gone before its expiry: %v", got)
	}
	if got := r.get(now.Add(providerTTL+recordTick), recordKey(7)); len(got) != 0 {
		t.Fatalf("a record outlives its expiry by more than a tick: %v", got)
	}
	if len(r.peers) > 200 {
		t.Fatalf("%d provider numbers in use for 1 provider with records: the gone ones are never forgotten", len(r.peers))
	}
}
