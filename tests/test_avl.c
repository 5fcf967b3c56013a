/* SPDX-License-Identifier: MIT */
/* tests/test_avl.c — the intrusive AVL tree behind the region map: order, balance, floor/above, removal. */
#include <stdlib.h>

#include "avl.h"
#include "testutil.h"

struct item {
    struct kvmm_avl_node node;
};

static struct kvmm_avl_node *insert_key(struct kvmm_avl_tree *t, uintptr_t key)
{
    struct item *it = calloc(1, sizeof *it);
    ck_assert_ptr_nonnull(it);
    it->node.key = key;
    kvmm_avl_insert(t, &it->node);
    return &it->node;
}

static void free_all(struct kvmm_avl_tree *t)
{
    struct kvmm_avl_node *n;
    while ((n = kvmm_avl_first(t))) {
        kvmm_avl_remove(t, n);
        free(kvmm_container_of(n, struct item, node));
    }
}

START_TEST(ascending_insert_stays_balanced)
{
    struct kvmm_avl_tree t = {0};
    for (uintptr_t k = 1; k <= 100000; k++)
        insert_key(&t, k * 16);
    ck_assert_int_eq(kvmm_avl_validate(&t), 100000);
    /* An AVL tree of n nodes is at most ~1.44 log2(n) high: 100 000 nodes => <= 24. */
    ck_assert_int_le(t.root->height, 24);
    free_all(&t);
    ck_assert_int_eq(t.count, 0);
}
END_TEST

START_TEST(floor_and_above)
{
    struct kvmm_avl_tree t = {0};
    for (uintptr_t k = 100; k <= 1000; k += 100)
        insert_key(&t, k);
    ck_assert_ptr_null(kvmm_avl_floor(&t, 99));
    ck_assert_uint_eq(kvmm_avl_floor(&t, 100)->key, 100);
    ck_assert_uint_eq(kvmm_avl_floor(&t, 199)->key, 100);
    ck_assert_uint_eq(kvmm_avl_floor(&t, UINTPTR_MAX)->key, 1000);
    ck_assert_uint_eq(kvmm_avl_above(&t, 0)->key, 100);
    ck_assert_uint_eq(kvmm_avl_above(&t, 100)->key, 200);
    ck_assert_ptr_null(kvmm_avl_above(&t, 1000));
    free_all(&t);
}
END_TEST

START_TEST(next_prev_walk_in_order)
{
    struct kvmm_avl_tree t = {0};
    for (uintptr_t k = 0; k < 1000; k++)
        insert_key(&t, (k * 7919) % 1000); /* a permutation of 0..999 */
    uintptr_t expect = 0;
    for (struct kvmm_avl_node *n = kvmm_avl_first(&t); n; n = kvmm_avl_next(n))
        ck_assert_uint_eq(n->key, expect++);
    ck_assert_uint_eq(expect, 1000);
    struct kvmm_avl_node *last = kvmm_avl_floor(&t, UINTPTR_MAX);
    for (struct kvmm_avl_node *n = last; n; n = kvmm_avl_prev(n))
        ck_assert_uint_eq(n->key, --expect);
    free_all(&t);
}
END_TEST

START_TEST(random_insert_remove_keeps_invariants)
{
    enum { N = 20000 };
    struct kvmm_avl_tree t = {0};
    static struct kvmm_avl_node *nodes[N];
    srand(12345);
    for (int i = 0; i < N; i++)
        nodes[i] = insert_key(&t, (uintptr_t)i * 4096);
    for (int i = N - 1; i > 0; i--) { /* shuffle, then remove in random order */
        int j = rand() % (i + 1);
        struct kvmm_avl_node *tmp = nodes[i];
        nodes[i] = nodes[j];
        nodes[j] = tmp;
    }
    for (int i = 0; i < N; i++) {
        uintptr_t key = nodes[i]->key;
        kvmm_avl_remove(&t, nodes[i]);
        free(kvmm_container_of(nodes[i], struct item, node));
        if (i % 997 == 0)
            ck_assert_int_eq(kvmm_avl_validate(&t), N - 1 - i);
        struct kvmm_avl_node *f = kvmm_avl_floor(&t, key);
        ck_assert(f == NULL || f->key < key);
    }
    ck_assert_ptr_null(t.root);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("avl");
    TCase *tc = tcase_create("tree");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ascending_insert_stays_balanced);
    tcase_add_test(tc, floor_and_above);
    tcase_add_test(tc, next_prev_walk_in_order);
    tcase_add_test(tc, random_insert_remove_keeps_invariants);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
