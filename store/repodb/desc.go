package repodb

import (
	"archive/tar"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/flocon/flocon/verify"
)

// set stores one section of a desc into e.
func (e *Entry) set(name string, values []string) error {
	if !slices.Contains(knownFields, name) {
		if e.Fields == nil {
			e.Fields = make(map[string][]string)
		}
		e.Fields[name] = append(e.Fields[name], values...)
		return nil
	}
	if len(values) > 1 {
		return fmt.Errorf("%%%s%% has %d values, want one: %w", name, len(values), ErrEntry)
	}
	v := ""
	if len(values) == 1 {
		v = values[0]
	}
	switch name {
	case "FILENAME":
		e.Filename = v
	case "NAME":
		e.Name = v
	case "BASE":
		e.Base = v
	case "VERSION":
		e.Version = v
	case "DESC":
		e.Desc = v
	case "ARCH":
		e.Arch = v
	case "MD5SUM":
		e.MD5 = v
	case "SHA256SUM":
		e.SHA256 = strings.ToLower(v)
	case "PACKAGER":
		e.Packager = v
	case "PGPSIG":
		sig, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return fmt.Errorf("%%PGPSIG%%: %w: %w", ErrEntry, err)
		}
		e.PGPSig = sig
	default: // CSIZE, ISIZE, BUILDDATE
		return e.setNumber(name, v)
	}
	return nil
}

func (e *Entry) setNumber(name, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%%%s%% %q: not a number: %w", name, truncate(v), ErrEntry)
	}
	switch name {
	case "CSIZE":
		e.CSize = n
	case "ISIZE":
		e.ISize = n
	case "BUILDDATE":
		e.BuildDate = n
	}
	return nil
}

func (e *Entry) validate() error {
	switch {
	case e.Filename == "":
		return fmt.Errorf("missing %%FILENAME%%: %w", ErrEntry)
	case !validPkgFilename(e.Filename):
		return fmt.Errorf("%%FILENAME%% %q: not a package file name: %w", truncate(e.Filename), ErrEntry)
	case e.Name == "":
		return fmt.Errorf("%s: missing %%NAME%%: %w", e.Filename, ErrEntry)
	case e.Version == "":
		return fmt.Errorf("%s: missing %%VERSION%%: %w", e.Filename, ErrEntry)
	case e.SHA256 == "":
		return fmt.Errorf("%s: missing %%SHA256SUM%%: %w", e.Filename, ErrEntry)
	}
	if sum, err := hex.DecodeString(e.SHA256); err != nil || len(sum) != 32 {
		return fmt.Errorf("%s: %%SHA256SUM%% %q: %w", e.Filename, truncate(e.SHA256), ErrEntry)
	}
	return nil
}

// validPkgFilename: a db entry names a package file (verify's grammar).
func validPkgFilename(name string) bool {
	_, err := verify.ParsePkgFilename(name)
	return err == nil
}

// FormatDesc writes e as a desc file in repo-add's section order; the
// inverse of ParseDesc.
func FormatDesc(e Entry) []byte {
	var b strings.Builder
	put := func(name string, values ...string) {
		if len(values) == 0 || (len(values) == 1 && values[0] == "") {
			return
		}
		fmt.Fprintf(&b, "%%%s%%\n%s\n\n", name, strings.Join(values, "\n"))
	}
	num := func(name string, n int64) {
		if n != 0 {
			put(name, strconv.FormatInt(n, 10))
		}
	}
	put("FILENAME", e.Filename)
	put("NAME", e.Name)
	put("BASE", e.Base)
	put("VERSION", e.Version)
	put("DESC", e.Desc)
	num("CSIZE", e.CSize)
	num("ISIZE", e.ISize)
	put("MD5SUM", e.MD5)
	put("SHA256SUM", e.SHA256)
	if len(e.PGPSig) > 0 {
		put("PGPSIG", base64.StdEncoding.EncodeToString(e.PGPSig))
	}
	put("ARCH", e.Arch)
	num("BUILDDATE", e.BuildDate)
	put("PACKAGER", e.Packager)
	names := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		put(k, e.Fields[k]...)
	}
	return []byte(b.String())
}

// WriteTar writes entries as an uncompressed sync database (NAME-VERSION/desc
// per entry); with files it also writes an empty files list, like a .files db.
func WriteTar(w io.Writer, entries []Entry, files bool) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		dir := e.Name + "-" + e.Version + "/"
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return fmt.Errorf("write %s: %w", dir, err)
		}
		members := map[string][]byte{"desc": FormatDesc(e)}
		if files {
			members["files"] = []byte("%FILES%\nusr/\nusr/bin/\nusr/bin/" + e.Name + "\n\n")
		}
		for _, m := range []string{"desc", "files"} {
			body, ok := members[m]
			if !ok {
				continue
			}
			hdr := &tar.Header{Name: dir + m, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("write %s%s: %w", dir, m, err)
			}
			if _, err := tw.Write(body); err != nil {
				return fmt.Errorf("write %s%s: %w", dir, m, err)
			}
		}
	}
	return tw.Close()
}
