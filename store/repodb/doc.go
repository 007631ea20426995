// Package repodb parses pacman sync databases (core.db, core.files): a tar
// archive, plain or compressed with gzip, zstd, xz or bzip2, holding one
// NAME-VERSION/desc per package. Parsing gives every package file its
// expected sha256 (hence its CID) before any byte of it is downloaded.
//
//	db, err := repodb.Parse(r)
//	e := db.ByFilename["zstd-1.5.6-1-x86_64.pkg.tar.zst"]
//	c, err := e.CID() // from %SHA256SUM%
//
// Walk streams a database one entry at a time for bounded memory (the
// store indexes databases of 15 000 entries with it). An entry whose desc is
// broken (no %FILENAME%, a bad %SHA256SUM%, ...) is skipped and counted in
// Stats; a broken archive is an error wrapping ErrFormat. FormatDesc and
// WriteTar write databases (fixtures, local repos).
package repodb
