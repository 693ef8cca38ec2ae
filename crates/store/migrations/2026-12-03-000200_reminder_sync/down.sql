DROP TABLE reminder_sync;
