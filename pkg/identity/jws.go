package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"math/big"
)

// verifyJWS checks a JWS signature over signingInput with key, for one allowlisted algorithm. It does what
// go-jose's verifiers do for these algorithms (and what the verifier previously ran through go-jose and go-oidc),
// without parsing the token again: the key type must fit the algorithm (an RSA key never verifies an ES256
// signature, a P-384 key never an ES256 one), ECDSA signatures must be the fixed-size r||s of the curve, and PSS
// accepts any salt length as go-jose does. HMAC and "none" are not in the switch and can never verify.
func verifyJWS(key any, alg, signingInput string, sig []byte) error {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%s needs an RSA key, the key is %T", alg, key)
		}
		h, digest := jwsDigest(alg[2:], signingInput)
		if alg[0] == 'R' {
			return rsa.VerifyPKCS1v15(pub, h, digest, sig)
		}
		return rsa.VerifyPSS(pub, h, digest, sig, nil)
	case "ES256", "ES384", "ES512":
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%s needs an EC key, the key is %T", alg, key)
		}
		curve, size := elliptic.P256(), 32
		switch alg {
		case "ES384":
			curve, size = elliptic.P384(), 48
		case "ES512":
			curve, size = elliptic.P521(), 66
		}
		if pub.Curve != curve {
			return fmt.Errorf("%s needs curve %s, the key is on %s", alg, curve.Params().Name, pub.Curve.Params().Name)
		}
		if len(sig) != 2*size {
			return fmt.Errorf("%s signature is %d bytes, want %d", alg, len(sig), 2*size)
		}
		_, digest := jwsDigest(alg[2:], signingInput)
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case "EdDSA":
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("EdDSA needs an Ed25519 key, the key is %T", key)
		}
		if !ed25519.Verify(pub, []byte(signingInput), sig) {
			return errors.New("Ed25519 signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("algorithm %q is not supported", alg)
}

// jwsDigest hashes the signing input with the SHA-2 function named by an algorithm's size suffix.
func jwsDigest(bits, signingInput string) (crypto.Hash, []byte) {
	switch bits {
	case "384":
		d := sha512.Sum384([]byte(signingInput))
		return crypto.SHA384, d[:]
	case "512":
		d := sha512.Sum512([]byte(signingInput))
		return crypto.SHA512, d[:]
	default:
		d := sha256.Sum256([]byte(signingInput))
		return crypto.SHA256, d[:]
	}
}
