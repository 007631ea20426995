package verify

import (
	"errors"
	"testing"
)

// The .PKGINFO of a small stream is read at the verdict from a kept copy,
// a larger one while it streams: both give the same verdict on the same
// bytes, whatever the chunks.
func TestIdentityInlineAndStreamedAgree(t *testing.T) {
	t.Parallel()
	hello := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	helloXZ := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.xz")
	tests := []struct {
		name    string
		data    []byte
		want    string
		wantErr error
	}{
		{name: "zstd package", data: hello, want: "hello"},
		{name: "xz package", data: helloXZ, want: "hello"},
		{name: "not a package", data: []byte("plain bytes"), wantErr: ErrNoPKGINFO},
		{name: "cut in the middle", data: hello[:len(hello)/3], wantErr: ErrNoPKGINFO},
		{name: "empty stream", wantErr: ErrNoPKGINFO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, inline := range []bool{true, false} {
				c := &identityCheck{inline: inline, size: int64(len(tt.data))}
				for off := 0; off < len(tt.data); off += 1000 {
					c.write(tt.data[off:min(off+1000, len(tt.data))])
				}
				res := c.stop(nil)
				if tt.wantErr != nil {
					if !errors.Is(res.err, tt.wantErr) {
						t.Errorf("inline %v: err = %v, want %v", inline, res.err, tt.wantErr)
					}
					continue
				}
				if res.err != nil || res.info.Name != tt.want {
					t.Errorf("inline %v: %+v, %v; want %s", inline, res.info, res.err, tt.want)
				}
				if inline && c.held != nil {
					t.Errorf("the kept copy outlives the verdict")
				}
			}
		})
	}
}

// A verifier keeps a copy only of a stream of known size up to
// identityInline; its Write never lets the copy grow past Expect.Size.
func TestIdentityInlineBound(t *testing.T) {
	t.Parallel()
	hello := makePackage(t, "hello", "1.0-1", "x86_64", ".pkg.tar.zst")
	for _, tt := range []struct {
		size   int64
		inline bool
	}{{-1, false}, {int64(len(hello)), true}, {identityInline, true}, {identityInline + 1, false}} {
		v, err := NewVerifier(nil, Expect{Size: tt.size, Filename: "hello-1.0-1-x86_64.pkg.tar.zst", Policy: SigNever})
		if err != nil {
			t.Fatal(err)
		}
		if v.ident.inline != tt.inline {
			t.Errorf("size %d: inline %v, want %v", tt.size, v.ident.inline, tt.inline)
		}
		_, _ = v.Write(hello)
		_, _ = v.Write(hello) // past the size when it is known
		if tt.inline && int64(len(v.ident.held)) > tt.size {
			t.Errorf("size %d: kept %d bytes", tt.size, len(v.ident.held))
		}
		_ = v.Close()
	}
}
