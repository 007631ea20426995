package verify

// PkgFile is a parsed package file name NAME-[EPOCH:]PKGVER-PKGREL-ARCH.pkg.tar[.EXT].
type PkgFile struct {
	Name    string
	Version string // [epoch:]pkgver-pkgrel
	Arch    string
	Ext     string // e.g. ".pkg.tar.zst"
}

// ParsePkgFilename parses a package file name (no directory, no .sig);
// errors wrap ErrBadFilename.
func ParsePkgFilename(name string) (PkgFile, error) { panic("unimplemented") }

// Vercmp compares two [epoch:]ver[-rel] versions exactly like libalpm's
// alpm_pkg_vercmp: <0, 0, >0.
func Vercmp(a, b string) int { panic("unimplemented") }
