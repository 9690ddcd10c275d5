package main

import (
	"context"
	"errors"
)

func wlHTTP(ctx context.Context, c *config, db *benchDB, r *result) error {
	return errors.New("http: not yet built")
}

func wlSSE(ctx context.Context, c *config, db *benchDB, r *result) error {
	return errors.New("sse: not yet built")
}

func wlMulti(ctx context.Context, c *config, db *benchDB, r *result) error {
	return errors.New("multi: not yet built")
}

func multiChild(c *config) error { return errors.New("multi: not yet built") }
