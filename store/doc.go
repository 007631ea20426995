// Package store keeps verified package blobs as read-only files named by
// their CID under $DATA/blobs, in-flight downloads under $DATA/tmp, and a
// badger index (metadata only, never blob bytes) under $DATA/index.
//
//	s, err := store.Open(store.Config{Dir: dataDir, KeepVersions: 3})
//	f, info, err := s.OpenBlob(c)           // store.ErrNotFound on a miss
//	p, leader, err := s.Begin(c, size)      // one in-flight download per CID
//	file, err := s.PutDB("core", "x86_64", "core.db", body, lastModified)
//	e, err := s.Entry("core", "x86_64", filename) // expected sha256 → CID
//	go s.Run(ctx)                           // retention, last-access flushes
//
// Writes are temp file, fsync, rename; the index row follows the rename. On
// Open the index and the blob files are reconciled: blob files without a row
// and rows without their file go, tmp/ is wiped.
//
// A Pending never lets a reader have the last byte before Commit, and Commit
// checks size and sha256 against the CID once more, so a complete file in
// blobs/ is always the content its name promises.
//
// Index layout (badger keys): blob/<cid> → BlobInfo, sig/<cid> → signature,
// db/<repo>/<arch>/<name> → DBFile, entry/<repo>/<arch>/<filename> →
// repodb.Entry, cid/<cid> → (repo, arch, filename), file/<filename> → cid,
// meta/<ns>/<key> → bytes.
// Last accesses are kept in memory and written in batches.
//
// The behaviour every store must have is the conformance suite in
// [github.com/flocon/flocon/store/storetest].
package store
