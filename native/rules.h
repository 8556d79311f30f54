/* Rule table (probed by the policy filters, native/policy.c): rule key (local identity, dir, peer identity, block id) ->
 * span of segments (proto, port_lo, port_hi, rule_id) in one flat array. While
 * adding, a span holds the entries as given; seal turns each span into disjoint
 * port segments per protocol carrying the smallest covering rule id, sorted by
 * (proto, lo), so a key is answered by two binary searches. A verdict probes at
 * most 2 x (1 + blocks of the peer's class) keys; neither probe count nor probe
 * cost grows with the number of policies. Semantics: docs/pipeline.md. */
#ifndef NS_RULES_H
#define NS_RULES_H

#include "nsint.h"

struct rule_key {
    uint32_t local;
    uint32_t peer;
    uint32_t block;
    uint8_t dir;
    uint8_t pad[3];
};
_Static_assert(sizeof(struct rule_key) == 16, "rule_key has no padding (hash covers it)");

struct rule_entry {
    uint32_t rule_id;
    uint16_t lo, hi;
    uint8_t proto;
    uint8_t pad[3];
};
_Static_assert(sizeof(struct rule_entry) == 12, "rule_entry has no padding");

struct rule_keyrec {
    struct rule_key key;
    uint32_t off, cnt;       /* span in rules.entry after seal; cnt also while adding */
};

struct rules {
    uint32_t max_keys, n_keys;
    uint32_t max_entries, n_entries;
    struct rule_keyrec *keys;
    struct rule_entry *entry;
    uint32_t *entry_key;     /* while adding: key index of each entry */
    struct hidx idx;         /* key -> keys[] (ref = index + 1) */
};

int rules_init(struct rules *r, uint32_t max_keys, uint32_t max_entries);
void rules_fini(struct rules *r);
int rules_add(struct rules *r, const struct rule_key *k, uint8_t proto, uint16_t lo,
              uint16_t hi, uint32_t rule_id);
int rules_seal(struct rules *r);
uint64_t rules_bytes(const struct rules *r);
/* Smallest matching rule id under key k, or NS_NONE32. */
uint32_t rules_match(const struct rules *r, const struct rule_key *k, uint8_t proto,
                     uint16_t dport, int any_proto_only);

#endif
