"""One module per operator action, each exposing one run_<action>() function."""
