// Package storetest holds the behaviour every flocon store must have, as a
// conformance suite, plus helpers that build blobs, fake packages and repo
// databases for tests.
//
//	func TestConformance(t *testing.T) {
//		storetest.Conformance(t, func(t *testing.T) *store.Store {
//			s, _ := store.Open(store.Config{Dir: t.TempDir()})
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Conformance covers blobs (round trip, reads, removal, listing), signatures,
// meta values, repo databases (entries, generations, refused input, name
// checks) and in-flight downloads ([store.Pending]: shared leader, readers
// that follow the file and never get the last byte before Commit, Abort,
// Truncate, context cancellation).
package storetest
