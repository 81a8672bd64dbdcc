package kcpctrl

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// recorder writes core/v1 Events into the workspace of the object they are about, through that workspace's client,
// as the reconcilers' events.EventRecorder. Writes are synchronous and short (a few per Account lifetime); a failed
// write is logged and never fails the reconcile.
type recorder struct {
	c         client.Client
	scheme    *runtime.Scheme
	component string
	log       logr.Logger
}

// maxNote bounds an Event's message as the API server does (1 KiB for events.k8s.io notes).
const maxNote = 1024

func (r *recorder) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	obj, ok := regarding.(client.Object)
	if !ok {
		return
	}
	gvk, err := apiutil.GVKForObject(obj, r.scheme)
	if err != nil {
		return
	}
	msg := fmt.Sprintf(note, args...)
	if len(msg) > maxNote {
		msg = msg[:maxNote-3] + "..."
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: obj.GetName() + ".", Namespace: obj.GetNamespace()},
		InvolvedObject: corev1.ObjectReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
			Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion()},
		Type: eventtype, Reason: reason, Action: action, Message: msg,
		Source:              corev1.EventSource{Component: r.component},
		ReportingController: r.component, ReportingInstance: r.component,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.c.Create(ctx, ev); err != nil {
		r.log.V(1).Info("could not record an event", "reason", reason, "object", obj.GetNamespace()+"/"+obj.GetName(), "error", err.Error())
	}
}
