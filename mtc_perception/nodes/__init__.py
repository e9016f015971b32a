"""rclpy nodes: thin layers over the ROS-free modules (node_core, imaging, perceptor). Importing
this package needs nothing from ROS; importing a node module needs rclpy."""
