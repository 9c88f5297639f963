package kek

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/config"
)

func writeKeyFile(t *testing.T, dir, name string, k []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := WriteFile(path, k); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadFromFileAndHex(t *testing.T) {
	dir := t.TempDir()
	cur, old := mustKey(t), mustKey(t)
	curPath, oldPath := writeKeyFile(t, dir, "cur.hex", cur), writeKeyFile(t, dir, "old.hex", old)
	sealedOld, _ := mustRing(t, old).Seal("ad", []byte("v"))

	for name, cfg := range map[string]config.Secrets{
		"kek_file": {KEKFile: curPath, OldKEKFiles: []string{oldPath}},
		"kek":      {KEK: hex.EncodeToString(cur), OldKEKFiles: []string{oldPath}},
		"KEK":      {KEK: strings.ToUpper(hex.EncodeToString(cur)), OldKEKFiles: []string{oldPath}},
	} {
		t.Run(name, func(t *testing.T) {
			for _, postgres := range []bool{false, true} {
				r, local, err := Load(cfg, filepath.Join(dir, "data"), postgres)
				if err != nil {
					t.Fatal(err)
				}
				if local != "" {
					t.Errorf("a configured KEK reported as in the data directory (%s)", local)
				}
				if r.ID() != ID(cur) {
					t.Errorf("current KEK %s, want %s", r.ID(), ID(cur))
				}
				if v, err := r.Open("ad", sealedOld); err != nil || string(v) != "v" {
					t.Errorf("old KEK not accepted: %q, %v", v, err)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a configured KEK still created the data directory")
	}
}

func TestLoadPostgresNeedsKEK(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Load(config.Secrets{}, dir, true)
	if err == nil {
		t.Fatal("PostgreSQL without a KEK: no error")
	}
	for _, want := range []string{"PostgreSQL", "secrets.kek_file", "TOKENGATE_SECRETS_KEK", "kek generate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, DataDirFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a KEK was generated for PostgreSQL")
	}
}

func TestLoadGeneratesIntoDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	r, local, err := Load(config.Secrets{}, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if local != filepath.Join(dir, DataDirFile) {
		t.Fatalf("generated KEK reported at %q", local)
	}
	fi, err := os.Stat(local)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("generated KEK file mode %04o, want 0600", fi.Mode().Perm())
	}
	k, err := ReadFile(local)
	if err != nil || ID(k) != r.ID() {
		t.Fatalf("the file does not hold the KEK in use: %v", err)
	}
	sealed, _ := r.Seal("ad", []byte("v"))

	// A later start reuses it.
	r2, local2, err := Load(config.Secrets{}, dir, false)
	if err != nil || local2 != local || r2.ID() != r.ID() {
		t.Fatalf("second Load: %v, %s, %s", err, local2, r2.ID())
	}
	if v, err := r2.Open("ad", sealed); err != nil || string(v) != "v" {
		t.Fatalf("second Load cannot open the first's value: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data directory holds %d entries, want only %s", len(entries), DataDirFile)
	}
}

// TestLoadGenerateRace: processes starting at once on one data directory
// (server and CLI) end up with the same KEK.
func TestLoadGenerateRace(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, _, err := Load(config.Secrets{}, dir, false)
			if errs[i] = err; err == nil {
				ids[i] = r.ID()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent Loads got KEKs %s and %s", ids[0], ids[i])
		}
	}
}

func TestLoadRefusesOpenPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX permissions")
	}
	dir := t.TempDir()
	k := mustKey(t)
	path := writeKeyFile(t, dir, "kek.hex", k)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o610} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		for _, cfg := range []config.Secrets{{KEKFile: path}, {KEK: hex.EncodeToString(mustKey(t)), OldKEKFiles: []string{path}}} {
			_, _, err := Load(cfg, dir, false)
			if err == nil || !strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), path) {
				t.Errorf("mode %04o: error %v, want a refusal naming the file and chmod 600", mode, err)
			}
		}
	}
	// The generated file in the data directory is checked too.
	data := t.TempDir()
	if _, _, err := Load(config.Secrets{}, data, false); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(data, DataDirFile), 0o644)
	if _, _, err := Load(config.Secrets{}, data, false); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable generated KEK: %v", err)
	}
	os.Chmod(path, 0o400)
	if _, _, err := Load(config.Secrets{KEKFile: path}, dir, false); err != nil {
		t.Errorf("mode 0400 refused: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	k := mustKey(t)
	good := writeKeyFile(t, dir, "good.hex", k)
	short := filepath.Join(dir, "short.hex")
	os.WriteFile(short, []byte(hex.EncodeToString(k[:31])+"\n"), 0o600)
	raw := filepath.Join(dir, "raw.bin")
	os.WriteFile(raw, k, 0o600)
	notHex := filepath.Join(dir, "nothex.hex")
	bad := []byte(hex.EncodeToString(k))
	bad[10] = 'z'
	os.WriteFile(notHex, bad, 0o600)

	for name, c := range map[string]struct {
		cfg  config.Secrets
		want string
	}{
		"both":           {config.Secrets{KEK: hex.EncodeToString(k), KEKFile: good}, "not both"},
		"short hex":      {config.Secrets{KEK: hex.EncodeToString(k[:31])}, "secrets.kek: must hold"},
		"missing file":   {config.Secrets{KEKFile: filepath.Join(dir, "nope")}, "no such file"},
		"short file":     {config.Secrets{KEKFile: short}, "64 hex characters"},
		"raw file":       {config.Secrets{KEKFile: raw}, "64 hex characters"},
		"not hex file":   {config.Secrets{KEKFile: notHex}, "64 hex characters"},
		"bad old file":   {config.Secrets{KEKFile: good, OldKEKFiles: []string{good, short}}, "secrets.old_kek_files[1]"},
		"missing old":    {config.Secrets{KEKFile: good, OldKEKFiles: []string{filepath.Join(dir, "gone")}}, "secrets.old_kek_files[0]"},
		"directory file": {config.Secrets{KEKFile: dir}, "not a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Load(c.cfg, dir, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
			assertNoSecret(t, err.Error(), k, bad)
		})
	}
}

func TestWriteFileRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := mustKey(t), mustKey(t)
	path := writeKeyFile(t, dir, "kek.hex", k1)
	err := WriteFile(path, k2)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := ReadFile(path)
	if err != nil || !bytes.Equal(got, k1) {
		t.Fatalf("the KEK file changed after a refused overwrite: %v", err)
	}
	raw, _ := os.ReadFile(path)
	if string(raw) != hex.EncodeToString(k1)+"\n" {
		t.Errorf("file content %q, want the KEK as hex and a newline", raw)
	}
}
