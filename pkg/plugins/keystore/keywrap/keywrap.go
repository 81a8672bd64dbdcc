// Package keywrap implements AES key wrap with padding (RFC 5649), the
// second stage of the PKCS#11 mechanism CKM_RSA_AES_KEY_WRAP that BYOK
// clients use to wrap key material too long for RSA-OAEP (RSA private
// keys): RSA-OAEP(ephemeral AES key) || WrapPad(ephemeral key, material).
// It is the same construction as `openssl enc -id-aes256-wrap-pad`.
package keywrap

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// kwpIV is the alternative initial value of RFC 5649.
var kwpIV = [4]byte{0xA6, 0x59, 0x59, 0xA6}

// WrapPad wraps plaintext under kek with AES key wrap with padding
// (RFC 5649).
func WrapPad(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 || uint64(len(plaintext)) > 0xFFFFFFFF {
		return nil, errors.New("key wrap: plaintext length out of range")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	padded := make([]byte, (len(plaintext)+7)/8*8)
	copy(padded, plaintext)
	var a [8]byte
	copy(a[:4], kwpIV[:])
	binary.BigEndian.PutUint32(a[4:], uint32(len(plaintext)))
	n := len(padded) / 8
	if n == 1 {
		out := make([]byte, 16)
		copy(out, a[:])
		copy(out[8:], padded)
		block.Encrypt(out, out)
		return out, nil
	}
	out := make([]byte, 8+len(padded))
	copy(out[8:], padded)
	var b [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(b[:8], a[:])
			copy(b[8:], out[8*i:8*i+8])
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(b[:8])^t)
			copy(out[8*i:], b[8:])
		}
	}
	copy(out, a[:])
	return out, nil
}

var ErrUnwrap = errors.New("key unwrap: integrity check failed")

// UnwrapPad reverses WrapPad, checking the RFC 5649 integrity
// value, the length and the zero padding.
func UnwrapPad(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) < 16 || len(wrapped)%8 != 0 {
		return nil, errors.New("key unwrap: wrapped length must be a multiple of 8, at least 16")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	var a [8]byte
	r := make([]byte, 8*n)
	if n == 1 {
		var b [16]byte
		block.Decrypt(b[:], wrapped)
		copy(a[:], b[:8])
		copy(r, b[8:])
	} else {
		copy(a[:], wrapped[:8])
		copy(r, wrapped[8:])
		var b [16]byte
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a[:])^t)
				copy(b[8:], r[8*(i-1):8*i])
				block.Decrypt(b[:], b[:])
				copy(a[:], b[:8])
				copy(r[8*(i-1):], b[8:])
			}
		}
	}
	if subtle.ConstantTimeCompare(a[:4], kwpIV[:]) != 1 {
		return nil, ErrUnwrap
	}
	mli := int(binary.BigEndian.Uint32(a[4:]))
	if mli <= 8*(n-1) || mli > 8*n {
		return nil, ErrUnwrap
	}
	for _, c := range r[mli:] {
		if c != 0 {
			return nil, ErrUnwrap
		}
	}
	return r[:mli], nil
}
