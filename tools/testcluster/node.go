package main

// A simulated node: one Ready Node, every Pod bound to it and given the
// status a kubelet would report, so Deployments, StatefulSets, Jobs and
// Helm's waits become ready (or fail) the way they do on a real node.
//
// A Pod's annotation testcluster.kedge.dev/pod chooses its fate:
//   (none)    long-running Pods run and are Ready; Pods that restart
//             Never/OnFailure (Jobs, Helm test hooks) succeed
//   unready   runs but never becomes Ready
//   fail      long-running: crash-loops; run-once: fails (exit code 1)

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

const (
	nodeName          = "testcluster-node"
	podFateAnnotation = "testcluster.kedge.dev/pod"
)

// runNode registers the node and keeps every Pod's status as a kubelet
// would, until ctx ends.
func runNode(ctx context.Context, kubeconfigPath string) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return err
	}
	config.QPS, config.Burst = 200, 400
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	if err := registerNode(ctx, client); err != nil {
		return fmt.Errorf("registering node %s: %w", nodeName, err)
	}
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods()
	enqueue := func(obj interface{}) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	kubelet := &kubelet{client: client, pods: pods.Lister()}
	for {
		key, shutdown := queue.Get()
		if shutdown {
			return nil
		}
		if err := kubelet.sync(ctx, key); err != nil && ctx.Err() == nil {
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

func registerNode(ctx context.Context, client kubernetes.Interface) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   nodeName,
			Labels: map[string]string{"kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux"},
		},
	}
	created, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
	}
	_, err = client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

type kubelet struct {
	client kubernetes.Interface
	pods   corelisters.PodLister
}

func (k *kubelet) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := k.pods.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	pods := k.client.CoreV1().Pods(namespace)
	switch {
	case pod.DeletionTimestamp != nil:
		// No kubelet confirms a graceful stop: end it as if the containers exited.
		zero := int64(0)
		err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	case pod.Spec.NodeName == "":
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: nodeName},
		}
		err := pods.Bind(ctx, binding, metav1.CreateOptions{})
		if apierrors.IsConflict(err) {
			return nil
		}
		return err
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return nil
	}
	status := simulatedStatus(pod, time.Now())
	if pod.Status.Phase == status.Phase && len(pod.Status.ContainerStatuses) == len(status.ContainerStatuses) &&
		conditionStatus(pod.Status, corev1.PodReady) == conditionStatus(status, corev1.PodReady) {
		return nil
	}
	updated := pod.DeepCopy()
	updated.Status = status
	_, err = pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func conditionStatus(status corev1.PodStatus, kind corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range status.Conditions {
		if c.Type == kind {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// simulatedStatus is what a kubelet would report for pod once its
// containers started.
func simulatedStatus(pod *corev1.Pod, at time.Time) corev1.PodStatus {
	now := metav1.NewTime(at)
	fate := pod.Annotations[podFateAnnotation]
	runsOnce := pod.Spec.RestartPolicy == corev1.RestartPolicyNever ||
		pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
	phase, ready := corev1.PodRunning, fate == ""
	var state corev1.ContainerState
	restarts := int32(0)
	switch {
	case runsOnce && fate == "":
		phase = corev1.PodSucceeded
		state.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}
	case runsOnce && fate == "fail":
		phase = corev1.PodFailed
		state.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", StartedAt: now, FinishedAt: now}
	case fate == "fail":
		restarts = 1
		state.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "simulated crash"}
	default:
		state.Running = &corev1.ContainerStateRunning{StartedAt: now}
	}
	readiness := corev1.ConditionFalse
	if ready && phase == corev1.PodRunning {
		readiness = corev1.ConditionTrue
	}
	containers := make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		started := state.Running != nil
		containers = append(containers, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "simulated://" + c.Image,
			State: state, Ready: readiness == corev1.ConditionTrue, RestartCount: restarts, Started: &started,
		})
	}
	condition := func(kind corev1.PodConditionType, status corev1.ConditionStatus) corev1.PodCondition {
		return corev1.PodCondition{Type: kind, Status: status, LastTransitionTime: now}
	}
	return corev1.PodStatus{
		Phase: phase,
		Conditions: []corev1.PodCondition{
			condition(corev1.PodScheduled, corev1.ConditionTrue),
			condition(corev1.PodInitialized, corev1.ConditionTrue),
			condition(corev1.ContainersReady, readiness),
			condition(corev1.PodReady, readiness),
		},
		HostIP:            "127.0.0.1",
		PodIP:             "10.0.0.1",
		StartTime:         &now,
		ContainerStatuses: containers,
		QOSClass:          corev1.PodQOSBestEffort,
	}
}
