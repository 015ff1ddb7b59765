/*
 * history.h - the event-time score history (history.c): after events
 * are stored, the history of their users is corrected for every tracked
 * model.
 */
#ifndef PROPENSITY_HISTORY_GLUE_H
#define PROPENSITY_HISTORY_GLUE_H

#include "postgres.h"

#include "store.h"

/*
 * After events were stored, inside an SPI connection: correct the score
 * history of their users for the tracked models.  _rows: the decoded rows
 * stored; _array: an events[] array of type array_type.
 */
extern void prop_history_after_rows(const EventRow *rows, int n);
extern void prop_history_after_array(Datum batch, Oid array_type);

#endif
