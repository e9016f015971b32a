"""rclpy nodes: thin layers over the ROS-free modules (:mod:`mtc_perception.node_core`,
:mod:`mtc_perception.messages`, :mod:`mtc_perception.frame`, :mod:`mtc_perception.bench.player`).
Importing this package needs nothing from ROS; importing a node module needs rclpy."""
