/* Egress and ingress policy filters (docs/pipeline.md "4-5. Egress and ingress
 * policy filters"): the decision for a new connection, over the compiled tables
 * (the rule table is native/rules.c). The model's primitive it must equal is
 * pipeline/model/connections.py `_decide`; pipeline/dataplane/oracle/policy.py
 * calls that primitive. */
#ifndef NS_POLICY_H
#define NS_POLICY_H

#include "tables.h"

/* One's own address (the same pod, on any of its interfaces, or the same node): never
 * policed, and never kept from itself by networks. */
static inline int ns_own_address(const struct ns_endpoint *sep, const struct ns_endpoint *dep)
{
    return sep && dep && sep->kind == dep->kind && sep->owner == dep->owner &&
           (sep->kind == NS_EP_POD || sep->kind == NS_EP_NODE);
}

/* NS_R_CONTINUE (allowed: *egress_rule / *ingress_rule get the deciding rule ids or
 * NS_RULE_NONE), NS_R_NETWORK_UNREACHABLE, NS_R_DENIED_EGRESS, NS_R_DENIED_INGRESS, or
 * NS_R_NO_ROUTE when neither end is a pod (only a recheck meets that: new packets are
 * routed first). arrival: the port the connection came in by (its network is the
 * source's); sep/dep: what sits at the source and (translated) destination address,
 * or NULL. */
int policy_verdict(const struct ns_tables *t, uint16_t arrival, const struct ns_endpoint *sep,
                   const struct ns_endpoint *dep, const uint8_t *src16, const uint8_t *dst16,
                   uint8_t proto, uint16_t dport, uint32_t *egress_rule, uint32_t *ingress_rule);

#endif
