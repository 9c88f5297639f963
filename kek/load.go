package kek

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/tokengate/tokengate/config"
)

// DataDirFile is the name of the KEK file generated in the embedded
// store's data directory when no KEK is configured.
const DataDirFile = "kek.hex"

// maxFileSize bounds what ReadFile reads: a KEK file is 64 hex characters
// and perhaps a newline.
const maxFileSize = 1 << 10

// Load builds the keyring cfg describes: the current KEK from cfg.KEK
// (hex) or cfg.KEKFile, plus the KEKs of cfg.OldKEKFiles. When neither
// KEK nor KEKFile is set, on the embedded store (postgres false) it uses
// the KEK file DataDirFile in dataDir, generating it (mode 0600) if it
// does not exist, and returns its path as inDataDir so the caller can warn
// that it sits beside the data it protects; on PostgreSQL it fails, as
// several nodes must share one configured KEK. Errors name the setting at
// fault and never contain key material.
func Load(cfg config.Secrets, dataDir string, postgres bool) (r *Keyring, inDataDir string, err error) {
	var current []byte
	switch {
	case cfg.KEK != "" && cfg.KEKFile != "":
		return nil, "", errors.New("secrets: set kek or kek_file, not both")
	case cfg.KEK != "":
		if current, err = decodeHex([]byte(cfg.KEK)); err != nil {
			return nil, "", fmt.Errorf("secrets.kek: %w", err)
		}
	case cfg.KEKFile != "":
		if current, err = ReadFile(cfg.KEKFile); err != nil {
			return nil, "", fmt.Errorf("secrets.kek_file: %w", err)
		}
	case postgres:
		return nil, "", errors.New("secrets: PostgreSQL needs a key-encryption key shared by every node: " +
			"set secrets.kek_file (or TOKENGATE_SECRETS_KEK); make one with: tokengate kek generate FILE")
	default:
		if dataDir == "" {
			return nil, "", errors.New("secrets: no KEK configured and no data directory to keep one in")
		}
		inDataDir = filepath.Join(dataDir, DataDirFile)
		if current, err = loadOrCreate(dataDir, inDataDir); err != nil {
			return nil, "", fmt.Errorf("secrets: KEK in the data directory: %w", err)
		}
	}
	var old [][]byte
	for i, path := range cfg.OldKEKFiles {
		k, err := ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("secrets.old_kek_files[%d]: %w", i, err)
		}
		old = append(old, k)
	}
	r, err = New(current, old...)
	if err != nil {
		return nil, "", err
	}
	return r, inDataDir, nil
}

// ReadFile reads a KEK file: 64 hex characters, surrounding white space
// ignored. Like ssh with a private key, it refuses a file that group or
// others may access. Errors name the file, never its content.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%s: permissions %04o are too open: a KEK file must not be accessible by group or others (chmod 600 %s)",
			path, perm, path)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	k, err := decodeHex(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

var errFormat = fmt.Errorf("must hold the KEK as %d hex characters (%d bytes)", 2*KeySize, KeySize)

func decodeHex(raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) != 2*KeySize {
		return nil, errFormat
	}
	k := make([]byte, KeySize)
	if _, err := hex.Decode(k, raw); err != nil {
		return nil, errFormat // hex's error quotes the offending byte
	}
	return k, nil
}

// WriteFile writes k to a new file at path, as hex, with mode 0600. It
// refuses to overwrite an existing file: that file may be the only copy of
// a KEK in use.
func WriteFile(path string, k []byte) error {
	if len(k) != KeySize {
		return fmt.Errorf("kek: a KEK is %d bytes, got %d", KeySize, len(k))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: not overwriting a KEK file", path)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	if err := writeAndSync(f, k); err != nil {
		os.Remove(path)
		return fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	return nil
}

func writeAndSync(f *os.File, k []byte) error {
	_, err := f.Write(hex.AppendEncode(nil, k))
	if err == nil {
		_, err = f.Write([]byte{'\n'})
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// loadOrCreate reads the KEK file at path, creating it first if it does
// not exist. Processes starting together (the server and the CLI) agree on
// one KEK: the file is written in full under a temporary name and then
// linked into place, which fails if another process linked first.
func loadOrCreate(dir, path string) ([]byte, error) {
	k, err := ReadFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if k, err = Generate(); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, DataDirFile+".tmp*") // mode 0600
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := writeAndSync(tmp, k); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ReadFile(path)
		}
		return nil, err
	}
	// The KEK is the only key to everything in the store: make its
	// directory entry durable before anything is encrypted with it.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return k, nil
}

// unwrapPath drops the path an *fs.PathError repeats (the callers name it).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
