"""Ansible playbooks run through the fleet server (docs/playbook-runs.md).

``catalogue`` lists the playbooks and their documented variables, ``inventory`` builds
one host per outlet from the registry (and holds back open outlets), ``worker`` runs
ansible-runner in a thread per run and stores its job events, ``api`` serves it all.
"""
