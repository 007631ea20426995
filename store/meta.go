package store

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/flocon/flocon/verify"
)

// maxMetaKey bounds meta keys; values are small by contract (bans, peer history).
const maxMetaKey = 1024

func checkMeta(ns, key string) error {
	if !verify.ValidName(ns) {
		return fmt.Errorf("%w: meta namespace %q", ErrInvalid, ns)
	}
	if key == "" || len(key) > maxMetaKey {
		return fmt.Errorf("%w: meta key of %d bytes", ErrInvalid, len(key))
	}
	return nil
}

// Meta reads a small value stored by node (bans, peer history) under key
// inside its own namespace; ErrNotFound when absent.
func (s *Store) Meta(ns, key string) ([]byte, error) {
	if err := checkMeta(ns, key); err != nil {
		return nil, fmt.Errorf("meta %s: %w", ns, err)
	}
	b, err := s.get(metaKey(ns, key))
	if err != nil {
		return nil, fmt.Errorf("meta %s/%s: %w", ns, key, err)
	}
	return b, nil
}

// PutMeta writes (value != nil) or deletes (value == nil) a small value.
func (s *Store) PutMeta(ns, key string, value []byte) error {
	if err := checkMeta(ns, key); err != nil {
		return fmt.Errorf("put meta %s: %w", ns, err)
	}
	err := s.update(func(txn *badger.Txn) error {
		if value == nil {
			return txn.Delete(metaKey(ns, key))
		}
		return txn.Set(metaKey(ns, key), value)
	})
	if err != nil {
		return fmt.Errorf("put meta %s/%s: %w", ns, key, err)
	}
	return nil
}

// MetaList calls fn for every key of namespace ns, in key order.
func (s *Store) MetaList(ns string, fn func(key string, value []byte) error) error {
	if !verify.ValidName(ns) {
		return fmt.Errorf("list meta: %w: namespace %q", ErrInvalid, ns)
	}
	type kv struct {
		k string
		v []byte
	}
	var rows []kv
	prefix := prefixMeta + ns + "/"
	err := s.scan(prefix, true, func(key, value []byte) error {
		rows = append(rows, kv{string(key[len(prefix):]), value})
		return nil
	})
	if err != nil {
		return fmt.Errorf("list meta %s: %w", ns, err)
	}
	for _, r := range rows {
		if err := fn(r.k, r.v); err != nil {
			return err
		}
	}
	return nil
}
