"""Members, their optimizer schedules, the social channels between them, and the population stepped
on one stream of real bytes."""
