package keychain

import (
	"k8s.io/apimachinery/pkg/api/meta"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// KeyEstablished reports whether the Account has ever had a working L1 key: its key answered a probe once
// (status.keyFirstAnsweredTime), or — for an Account last probed by a version that did not record that yet — it is
// Ready. From then on anything may have been wrapped under the key, so a missing key is lost, not absent: the
// platform must never create a new key under the old name (the Account reconciler does not call EnsureL1Key), because new material would make
// everything wrapped under the old one unrecoverable while the Account looked healthy.
func KeyEstablished(a *cmkv1.Account) bool {
	return a.Status.KeyFirstAnsweredTime != nil || meta.IsStatusConditionTrue(a.Status.Conditions, cmkv1.ConditionReady)
}
