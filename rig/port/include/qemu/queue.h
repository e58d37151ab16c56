/*
 * gmem-rig port stub layer: the QLIST part of qemu/queue.h (BSD-style
 * intrusive doubly linked lists), with QEMU's semantics:
 *  - QLIST_INSERT_HEAD links the element first;
 *  - QLIST_REMOVE unlinks through le_prev (the address of the pointer that
 *    points at the element), so removal is O(1) and needs no list head;
 *  - QLIST_FOREACH reads the next element from the current one *after* the
 *    body ran: a body that removes the current element ends the walk or
 *    continues from whatever its (cleared) link says, exactly as in QEMU.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RIG_QEMU_QUEUE_H
#define RIG_QEMU_QUEUE_H

#define QLIST_HEAD(name, type)                                              \
    struct name {                                                           \
        struct type *lh_first;                                              \
    }

#define QLIST_HEAD_INITIALIZER(head) { NULL }

#define QLIST_ENTRY(type)                                                   \
    struct {                                                                \
        struct type *le_next;                                               \
        struct type **le_prev;                                              \
    }

#define QLIST_INIT(head)                                                    \
    do {                                                                    \
        (head)->lh_first = NULL;                                            \
    } while (0)

#define QLIST_INSERT_HEAD(head, elm, field)                                 \
    do {                                                                    \
        if (((elm)->field.le_next = (head)->lh_first) != NULL) {            \
            (head)->lh_first->field.le_prev = &(elm)->field.le_next;        \
        }                                                                   \
        (head)->lh_first = (elm);                                           \
        (elm)->field.le_prev = &(head)->lh_first;                           \
    } while (0)

#define QLIST_REMOVE(elm, field)                                            \
    do {                                                                    \
        if ((elm)->field.le_next != NULL) {                                 \
            (elm)->field.le_next->field.le_prev = (elm)->field.le_prev;     \
        }                                                                   \
        *(elm)->field.le_prev = (elm)->field.le_next;                       \
        (elm)->field.le_next = NULL;                                        \
        (elm)->field.le_prev = NULL;                                        \
    } while (0)

#define QLIST_IS_INSERTED(elm, field) ((elm)->field.le_prev != NULL)
#define QLIST_EMPTY(head) ((head)->lh_first == NULL)
#define QLIST_FIRST(head) ((head)->lh_first)
#define QLIST_NEXT(elm, field) ((elm)->field.le_next)

#define QLIST_FOREACH(var, head, field)                                     \
    for ((var) = ((head)->lh_first); (var); (var) = ((var)->field.le_next))

#define QLIST_FOREACH_SAFE(var, head, field, next_var)                      \
    for ((var) = ((head)->lh_first);                                        \
         (var) && ((next_var) = ((var)->field.le_next), 1);                 \
         (var) = (next_var))

#endif
