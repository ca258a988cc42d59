package fetch

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Keychain finds the credentials for a registry (go-containerregistry's interface).
type Keychain = authn.Keychain

// AuthFiles is the keychain of the files Podman and Docker keep credentials in, read in Podman's order, the first
// entry for the registry winning: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
// ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, ${DOCKER_CONFIG:-~/.docker}/config.json. An entry is
// "auth" (base64 of USER:PASSWORD), or "username" and "password", or an "identitytoken"; Docker's credHelpers
// and credsStore run the docker-credential-NAME helper. Without an entry the registry is asked anonymously.
func AuthFiles() Keychain { return authFiles{} }

type authFiles struct{}

// authPaths lists the credential files in the order they are read.
func authPaths() []string {
	var out []string
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		out = append(out, p)
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		out = append(out, filepath.Join(rt, "containers/auth.json"))
	}
	home, _ := os.UserHomeDir()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" && home != "" {
		cfg = filepath.Join(home, ".config")
	}
	if cfg != "" {
		out = append(out, filepath.Join(cfg, "containers/auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		out = append(out, filepath.Join(d, "config.json"))
	} else if home != "" {
		out = append(out, filepath.Join(home, ".docker/config.json"))
	}
	return out
}

// authFile is the part of auth.json and config.json caisson reads.
type authFile struct {
	Auths       map[string]authEntry `json:"auths"`
	CredHelpers map[string]string    `json:"credHelpers"`
	CredsStore  string               `json:"credsStore"`
}

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// Resolve implements authn.Keychain.
func (authFiles) Resolve(target authn.Resource) (authn.Authenticator, error) {
	keys := authKeys(target)
	for _, p := range authPaths() {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, errorf("registry credentials %s: %v", p, err)
		}
		var f authFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, errorf("registry credentials %s: not a valid auth file: %v", p, err)
		}
		entries := map[string]authEntry{}
		for k, v := range f.Auths {
			entries[normalizeKey(k)] = v
		}
		for _, k := range keys {
			if e, ok := entries[k]; ok {
				cfg, err := e.config(p)
				if err != nil {
					return nil, err
				}
				return authn.FromConfig(cfg), nil
			}
		}
		helper := f.CredsStore
		for k, h := range f.CredHelpers {
			if normalizeKey(k) == target.RegistryStr() {
				helper = h
			}
		}
		if helper != "" {
			if cfg, ok, err := fromHelper(helper, target.RegistryStr()); err != nil {
				return nil, err
			} else if ok {
				return authn.FromConfig(cfg), nil
			}
		}
	}
	return authn.Anonymous, nil
}

// authKeys lists the keys an entry for target may have, most specific first: REGISTRY/REPOSITORY and its parent
// namespaces (Podman's), then REGISTRY; Docker Hub also as docker.io and Docker's index URL.
func authKeys(target authn.Resource) []string {
	reg := target.RegistryStr()
	var keys []string
	if repo, ok := target.(name.Repository); ok {
		parts := strings.Split(repo.RepositoryStr(), "/")
		for i := len(parts); i > 0; i-- {
			keys = append(keys, reg+"/"+strings.Join(parts[:i], "/"))
			if reg == name.DefaultRegistry {
				keys = append(keys, "docker.io/"+strings.Join(parts[:i], "/"))
			}
		}
	}
	keys = append(keys, reg)
	if reg == name.DefaultRegistry {
		keys = append(keys, "docker.io", "registry-1.docker.io")
	}
	return keys
}

// normalizeKey turns an auth file's key into REGISTRY[/PATH]: Docker writes URLs ("https://index.docker.io/v1/").
func normalizeKey(k string) string {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	k = strings.TrimSuffix(k, "/")
	for _, api := range []string{"/v1", "/v2"} {
		k = strings.TrimSuffix(k, api)
	}
	return k
}

// config decodes an entry of the file p.
func (e authEntry) config(p string) (authn.AuthConfig, error) {
	cfg := authn.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return cfg, errorf("registry credentials %s: an \"auth\" value is not base64: %v", p, err)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return cfg, errorf("registry credentials %s: an \"auth\" value is not USER:PASSWORD in base64", p)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return cfg, nil
}

// fromHelper asks the credential helper docker-credential-NAME for the registry's credentials (ok is false when
// it has none).
func fromHelper(helper, registry string) (authn.AuthConfig, bool, error) {
	prog := "docker-credential-" + helper
	path, err := exec.LookPath(prog)
	if err != nil {
		return authn.AuthConfig{}, false, errorf("registry credentials: the credential helper %s is configured but not installed", prog)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "get")
	cmd.Stdin = strings.NewReader(registry)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if strings.Contains(out.String()+errb.String(), "credentials not found") {
			return authn.AuthConfig{}, false, nil
		}
		return authn.AuthConfig{}, false, errorf("registry credentials: %s get: %v: %s", prog, err, strings.TrimSpace(errb.String()))
	}
	var r struct{ Username, Secret string }
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return authn.AuthConfig{}, false, errorf("registry credentials: %s get: %v", prog, err)
	}
	if r.Username == "<token>" {
		return authn.AuthConfig{IdentityToken: r.Secret}, true, nil
	}
	return authn.AuthConfig{Username: r.Username, Password: r.Secret}, true, nil
}

// String names the keychain (for messages).
func (authFiles) String() string { return fmt.Sprintf("credential files %v", authPaths()) }
