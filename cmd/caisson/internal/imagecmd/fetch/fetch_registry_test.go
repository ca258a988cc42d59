package fetch

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Fetch writes the image of an in-memory registry into an OCI layout that lists it, every blob in place.
func TestFetchLayout(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var blobGets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64"}); err != nil {
		t.Fatal(err)
	}
	image := strings.TrimPrefix(srv.URL, "http://") + "/test/img:1"
	ref, _ := name.ParseReference(image)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	pulled, err := Fetch(context.Background(), Options{Image: image, Platform: "linux/amd64", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n := blobGets.Load(); n != 3 {
		t.Errorf("%d blob downloads, want 3 (two layers and the config, each once)", n)
	}
	want, _ := img.Digest()
	if pulled != ref.Context().String()+"@"+want.String() {
		t.Errorf("pulled %s, want the digest %s", pulled, want)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Digest != want {
		t.Fatalf("index.json: %+v %v", im, err)
	}
	got, err := idx.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("the layout's layers: %d %v", len(layers), err)
	}
	for i, l := range layers {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || h != d {
			t.Errorf("layer %d: blob %v %v, want %v", i, h, err, d)
		}
	}
	if _, err := got.ConfigFile(); err != nil {
		t.Errorf("the layout's config: %v", err)
	}
	if _, err := Fetch(context.Background(), Options{Image: image, Platform: "linux/arm64", Dir: filepath.Join(t.TempDir(), "oci")}); err == nil ||
		!strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("an image for another platform: %v", err)
	}
}
