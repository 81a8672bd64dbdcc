package internalca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // RFC 5280 §4.2.1.2 method (1) key identifier, not a security function
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

const (
	maxKeyInputBytes = 64 << 10
	minRSABits       = 2048
	maxRSABits       = 8192
)

// ParsePrivateKey accepts a private key as PEM ("PRIVATE KEY" = PKCS#8,
// "RSA PRIVATE KEY" = PKCS#1, "EC PRIVATE KEY" = SEC 1) or as DER in any of
// those encodings, and returns it if it is a key type and size we sign for:
// RSA 2048–8192 bits, ECDSA P-256/P-384/P-521, Ed25519. Encrypted PEM is
// refused. Error messages never contain key material.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	if len(data) == 0 {
		return nil, errors.New("private key is empty")
	}
	if len(data) > maxKeyInputBytes {
		return nil, fmt.Errorf("private key input exceeds %d bytes", maxKeyInputBytes)
	}
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		return parsePEMKey(trimmed)
	}
	return parseDERKey(data, "")
}

func parsePEMKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no private key PEM block found")
		}
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "":
			return nil, errors.New("encrypted private keys are not supported")
		case block.Type == "EC PARAMETERS":
			continue // openssl ecparam -genkey emits this before the key
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return parseDERKey(block.Bytes, block.Type)
		default:
			return nil, fmt.Errorf("unexpected PEM block %q, want a private key", block.Type)
		}
	}
}

func parseDERKey(der []byte, pemType string) (crypto.Signer, error) {
	var (
		key any
		err error
	)
	switch pemType {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(der)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	default: // DER or an unusual PEM label: try each encoding
		if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(der); err != nil {
				key, err = x509.ParseECPrivateKey(der)
			}
		}
	}
	if err != nil {
		// x509's messages describe the structure, not the content.
		return nil, fmt.Errorf("cannot parse private key (PKCS#8, PKCS#1 or SEC 1 expected): %w", err)
	}
	return checkKey(key)
}

func checkKey(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits not accepted (want %d to %d)", bits, minRSABits, maxRSABits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("ECDSA curve %s not accepted", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("private key type %T not accepted", key)
	}
}

func parseCertChainPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block found")
	}
	return out, nil
}

func encodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// subjectKeyID is the SHA-1 of the subjectPublicKey bit string (RFC 5280
// §4.2.1.2 method 1), so it matches what openssl and Go compute for CAs.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes) //nolint:gosec // see import comment
	return sum[:], nil
}
