// Package testdb gives each test a PostgreSQL database of its own, so tests run in parallel
// against the real server. The server is TEST_DATABASE_URL, or the local default.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server tests use when TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres"

// AdminURL returns the URL of the database tests connect to for creating others.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// New creates an empty database, drops it when the test ends, and returns its URL.
func New(tb testing.TB) string {
	tb.Helper()
	u, drop, err := Create()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Logf("%v", err)
		}
	})
	return u
}

// Create creates an empty database and returns its URL and the function that drops it, for
// code that runs outside a test (TestMain).
func Create() (dbURL string, drop func() error, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "confiture_test_" + hex.EncodeToString(b[:])
	u, err := url.Parse(AdminURL())
	if err != nil {
		return "", nil, fmt.Errorf("testdb: TEST_DATABASE_URL must be a URL: %w", err)
	}
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", nil, fmt.Errorf("testdb: connect to %s (set TEST_DATABASE_URL): %w", AdminURL(), err)
	}
	defer admin.Close(ctx)
	// CREATE DATABASE copies template1 and fails if another session uses it at that moment;
	// try again briefly.
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
		if err == nil || attempt == 20 || !strings.Contains(err.Error(), "is being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return "", nil, fmt.Errorf("testdb: create database: %w", err)
	}
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			return fmt.Errorf("testdb: drop %s: %w", name, err)
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("testdb: drop %s: %w", name, err)
		}
		return nil
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}
