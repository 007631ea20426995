package node

// Mirrors is the upstream configuration in pacman's own form: URL templates
// with $repo and $arch, tried in order, plus per-repo lists for custom
// repositories with other layouts.
type Mirrors struct {
	Default []string            // e.g. https://geo.mirror.pkgbuild.com/$repo/os/$arch
	PerRepo map[string][]string // repo → templates, replacing Default for that repo
}
