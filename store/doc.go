// Package store keeps verified package blobs as read-only files named by
// their CID under $DATA/blobs, in-flight downloads under $DATA/tmp, and a
// badger index (metadata only, never blob bytes) under $DATA/index.
//
//	s, err := store.Open(store.Config{Dir: dataDir})
//	f, info, err := s.OpenBlob(c)           // store.ErrNotFound on a miss
//	p, leader, err := s.Begin(c, size)      // one in-flight download per CID
//
// Writes are temp file, fsync, rename; the index row follows the rename. On
// Open the index and the blob files are reconciled.
package store
