/* SPDX-License-Identifier: MIT */
/* lib/avl.h — intrusive AVL tree keyed by address: the O(log n) index behind regions and spans. */
#ifndef KVMM_AVL_H
#define KVMM_AVL_H

#include <stddef.h>
#include <stdint.h>

/* Embedded in the indexed object; key is the object's start address and must be unique per tree. */
struct kvmm_avl_node {
    struct kvmm_avl_node *left, *right, *parent;
    uintptr_t key;
    int height;
};

struct kvmm_avl_tree {
    struct kvmm_avl_node *root;
    size_t count;
};

#define kvmm_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

void kvmm_avl_insert(struct kvmm_avl_tree *tree, struct kvmm_avl_node *node);
void kvmm_avl_remove(struct kvmm_avl_tree *tree, struct kvmm_avl_node *node);
/* The node with the greatest key <= key, or NULL. */
struct kvmm_avl_node *kvmm_avl_floor(const struct kvmm_avl_tree *tree, uintptr_t key);
/* The node with the smallest key > key, or NULL. */
struct kvmm_avl_node *kvmm_avl_above(const struct kvmm_avl_tree *tree, uintptr_t key);
struct kvmm_avl_node *kvmm_avl_first(const struct kvmm_avl_tree *tree);
struct kvmm_avl_node *kvmm_avl_next(const struct kvmm_avl_node *node);
struct kvmm_avl_node *kvmm_avl_prev(const struct kvmm_avl_node *node);
/* Checks ordering, parent links, heights and balance; returns the node count or -1. For tests. */
long kvmm_avl_validate(const struct kvmm_avl_tree *tree);

#endif
