/*
 * worker.h - the ingest worker (worker.c): GUCs and registration, called
 * from _PG_init.
 */
#ifndef PROPENSITY_WORKER_H
#define PROPENSITY_WORKER_H

extern char *propensity_database;
extern char *propensity_worker_role;
extern int	propensity_poll_interval;
extern int	propensity_maintenance_interval;
extern int	propensity_restart_interval;

/* Define the worker GUCs; when preloaded, ask for shared memory and register the worker. */
extern void prop_worker_init(void);

#endif
