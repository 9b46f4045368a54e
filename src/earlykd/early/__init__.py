"""Early classification that decides when: one anytime student, stopping policies, aeon's estimator interface."""
