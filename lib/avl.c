/* SPDX-License-Identifier: MIT */
/* lib/avl.c — intrusive AVL tree keyed by address: the O(log n) index behind regions and spans. */
#include "avl.h"

static int height(const struct kvmm_avl_node *n)
{
    return n ? n->height : 0;
}

static void update_height(struct kvmm_avl_node *n)
{
    int l = height(n->left), r = height(n->right);
    n->height = 1 + (l > r ? l : r);
}

static void replace_child(struct kvmm_avl_tree *tree, struct kvmm_avl_node *parent,
                          struct kvmm_avl_node *old, struct kvmm_avl_node *new_child)
{
    if (!parent)
        tree->root = new_child;
    else if (parent->left == old)
        parent->left = new_child;
    else
        parent->right = new_child;
}

static struct kvmm_avl_node *rotate_left(struct kvmm_avl_tree *tree, struct kvmm_avl_node *x)
{
    struct kvmm_avl_node *y = x->right;
    x->right = y->left;
    if (y->left)
        y->left->parent = x;
    y->parent = x->parent;
    replace_child(tree, x->parent, x, y);
    y->left = x;
    x->parent = y;
    update_height(x);
    update_height(y);
    return y;
}

static struct kvmm_avl_node *rotate_right(struct kvmm_avl_tree *tree, struct kvmm_avl_node *x)
{
    struct kvmm_avl_node *y = x->left;
    x->left = y->right;
    if (y->right)
        y->right->parent = x;
    y->parent = x->parent;
    replace_child(tree, x->parent, x, y);
    y->right = x;
    x->parent = y;
    update_height(x);
    update_height(y);
    return y;
}

static struct kvmm_avl_node *rebalance(struct kvmm_avl_tree *tree, struct kvmm_avl_node *n)
{
    int balance = height(n->left) - height(n->right);
    if (balance > 1) {
        if (height(n->left->left) < height(n->left->right))
            rotate_left(tree, n->left);
        return rotate_right(tree, n);
    }
    if (balance < -1) {
        if (height(n->right->right) < height(n->right->left))
            rotate_right(tree, n->right);
        return rotate_left(tree, n);
    }
    update_height(n);
    return n;
}

/* Retraces to the root unconditionally: simpler than stopping early, and still O(log n). */
static void retrace(struct kvmm_avl_tree *tree, struct kvmm_avl_node *n)
{
    while (n)
        n = rebalance(tree, n)->parent;
}

void kvmm_avl_insert(struct kvmm_avl_tree *tree, struct kvmm_avl_node *node)
{
    struct kvmm_avl_node *parent = NULL, **link = &tree->root;
    while (*link) {
        parent = *link;
        link = node->key < parent->key ? &parent->left : &parent->right;
    }
    node->left = node->right = NULL;
    node->parent = parent;
    node->height = 1;
    *link = node;
    tree->count++;
    retrace(tree, parent);
}

void kvmm_avl_remove(struct kvmm_avl_tree *tree, struct kvmm_avl_node *node)
{
    struct kvmm_avl_node *fix_from;
    if (!node->left || !node->right) {
        struct kvmm_avl_node *child = node->left ? node->left : node->right;
        if (child)
            child->parent = node->parent;
        replace_child(tree, node->parent, node, child);
        fix_from = node->parent;
    } else {
        /* Splice the in-order successor into node's place (intrusive: nodes move, keys don't). */
        struct kvmm_avl_node *succ = node->right;
        while (succ->left)
            succ = succ->left;
        if (succ->parent != node) {
            fix_from = succ->parent;
            fix_from->left = succ->right;
            if (succ->right)
                succ->right->parent = fix_from;
            succ->right = node->right;
            node->right->parent = succ;
        } else {
            fix_from = succ;
        }
        succ->left = node->left;
        node->left->parent = succ;
        succ->parent = node->parent;
        replace_child(tree, node->parent, node, succ);
        succ->height = node->height;
    }
    tree->count--;
    retrace(tree, fix_from);
}

struct kvmm_avl_node *kvmm_avl_floor(const struct kvmm_avl_tree *tree, uintptr_t key)
{
    struct kvmm_avl_node *n = tree->root, *best = NULL;
    while (n) {
        if (n->key <= key) {
            best = n;
            n = n->right;
        } else {
            n = n->left;
        }
    }
    return best;
}

struct kvmm_avl_node *kvmm_avl_above(const struct kvmm_avl_tree *tree, uintptr_t key)
{
    struct kvmm_avl_node *n = tree->root, *best = NULL;
    while (n) {
        if (n->key > key) {
            best = n;
            n = n->left;
        } else {
            n = n->right;
        }
    }
    return best;
}

struct kvmm_avl_node *kvmm_avl_first(const struct kvmm_avl_tree *tree)
{
    struct kvmm_avl_node *n = tree->root;
    while (n && n->left)
        n = n->left;
    return n;
}

struct kvmm_avl_node *kvmm_avl_next(const struct kvmm_avl_node *n)
{
    if (n->right) {
        n = n->right;
        while (n->left)
            n = n->left;
        return (struct kvmm_avl_node *)n;
    }
    while (n->parent && n->parent->right == n)
        n = n->parent;
    return n->parent;
}

struct kvmm_avl_node *kvmm_avl_prev(const struct kvmm_avl_node *n)
{
    if (n->left) {
        n = n->left;
        while (n->right)
            n = n->right;
        return (struct kvmm_avl_node *)n;
    }
    while (n->parent && n->parent->left == n)
        n = n->parent;
    return n->parent;
}

/* The subtree's node count and height travel together in one value, so a failing branch has no
 * height left unset for the caller to read (GCC 12 at -O3 cannot prove that through out-parameters). */
struct subtree {
    long count; /* -1: the subtree breaks an invariant */
    int height;
};

static const struct subtree invalid = {-1, 0};

static struct subtree validate(const struct kvmm_avl_node *n, const struct kvmm_avl_node *parent,
                               uintptr_t lo, uintptr_t hi)
{
    if (!n)
        return (struct subtree){0, 0};
    /* No key fits left of 0 or right of UINTPTR_MAX; checked first, so the bounds below cannot wrap. */
    if (n->parent != parent || n->key < lo || n->key > hi ||
        (n->left && n->key == 0) || (n->right && n->key == UINTPTR_MAX))
        return invalid;
    struct subtree l = validate(n->left, n, lo, n->key - 1);
    if (l.count < 0)
        return invalid;
    struct subtree r = validate(n->right, n, n->key + 1, hi);
    if (r.count < 0)
        return invalid;
    if (l.height - r.height > 1 || r.height - l.height > 1 ||
        n->height != 1 + (l.height > r.height ? l.height : r.height))
        return invalid;
    return (struct subtree){l.count + r.count + 1, n->height};
}

long kvmm_avl_validate(const struct kvmm_avl_tree *tree)
{
    long count = validate(tree->root, NULL, 0, UINTPTR_MAX).count;
    return count == (long)tree->count ? count : -1;
}
